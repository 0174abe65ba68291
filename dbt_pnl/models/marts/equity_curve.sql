-- one row per (mode, variant, trade_date), over daily_pnl (every session the engine
-- ran; a session without trades is a 0).
--   cumulative_pnl: running sum of daily_pnl in date order
--   peak:           running max of cumulative_pnl, starting at 0 (before the first session)
--   drawdown:       cumulative_pnl - peak (<= 0)
with daily as (
    select
        mode,
        variant,
        trade_date,
        realized_pnl as daily_pnl,
        sum(realized_pnl) over (
            partition by mode, variant order by trade_date rows between unbounded preceding and current row
        ) as cumulative_pnl
    from {{ ref('daily_pnl') }}
)

select
    mode,
    variant,
    trade_date,
    daily_pnl,
    cumulative_pnl,
    greatest(0, max(cumulative_pnl) over (
        partition by mode, variant order by trade_date rows between unbounded preceding and current row
    )) as peak,
    cumulative_pnl - greatest(0, max(cumulative_pnl) over (
        partition by mode, variant order by trade_date rows between unbounded preceding and current row
    )) as drawdown
from daily
