-- one row per (mode, variant). d = daily_pnl of each session (0 without trades);
-- round trips from `trades`. Undefined ratios are NULL, never infinite:
--   win_rate = wins / trades; avg_win, avg_loss = mean P/L of winning, losing round trips;
--   profit_factor = sum of winning round trips / |sum of losing ones|;
--   expectancy = total_pnl / trades; max_drawdown = min(equity_curve.drawdown);
--   sharpe = mean(d) / stddev_samp(d) * sqrt(252);
--   sortino = mean(d) / sqrt(mean(min(d, 0)^2)) * sqrt(252);
--   return_on_capital = total_pnl / RISK_TRADING_CAPITAL: the one the variant's last day ran
--     with (its versions row), else the environment's (default 5,000,000);
--   exits_<reason>: round trips closed for that reason.
with days as (
    select
        mode,
        variant,
        min(trade_date) as first_date,
        max(trade_date) as last_date,
        count(*) as sessions,
        sum(realized_pnl) as total_pnl,
        max(realized_pnl) as best_day,
        min(realized_pnl) as worst_day,
        avg(realized_pnl) as mean_d,
        stddev_samp(realized_pnl) as sd_d,
        sqrt(avg(power(least(realized_pnl, 0), 2))) as downside_d
    from {{ ref('daily_pnl') }}
    group by mode, variant
),

round_trips as (
    select
        mode,
        variant,
        count(*) as trades,
        count(*) filter (where pnl > 0) as wins,
        count(*) filter (where pnl < 0) as losses,
        avg(pnl) filter (where pnl > 0) as avg_win,
        avg(pnl) filter (where pnl < 0) as avg_loss,
        sum(pnl) filter (where pnl > 0) as gross_win,
        sum(pnl) filter (where pnl < 0) as gross_loss,
        count(*) filter (where exit_reason = 'take_profit') as exits_take_profit,
        count(*) filter (where exit_reason = 'stop_loss') as exits_stop_loss,
        count(*) filter (where exit_reason = 'reversal') as exits_reversal,
        count(*) filter (where exit_reason = 'close') as exits_close,
        count(*) filter (where exit_reason = 'daily_loss_limit') as exits_daily_loss_limit,
        count(*) filter (where exit_reason = 'flatten') as exits_flatten
    from {{ ref('trades') }}
    group by mode, variant
),

capital as (
    select
        d.mode,
        d.variant,
        arg_max(cast(json_extract_string(v.settings, '$.RISK_TRADING_CAPITAL') as double), d.trade_date)
            as trading_capital
    from {{ ref('daily_pnl') }} as d
    inner join {{ source('alphagen', 'versions') }} as v
        on d.mode = v.mode
        and d.trade_date = v.session_date
        and d.version = v.version
    group by d.mode, d.variant
),

drawdowns as (
    select mode, variant, min(drawdown) as max_drawdown
    from {{ ref('equity_curve') }}
    group by mode, variant
)

select
    days.mode,
    days.variant,
    days.first_date,
    days.last_date,
    days.sessions,
    coalesce(rt.trades, 0) as trades,
    coalesce(rt.wins, 0) as wins,
    coalesce(rt.losses, 0) as losses,
    round(rt.wins / nullif(rt.trades, 0), 4) as win_rate,
    cast(round(rt.avg_win, 2) as decimal(18, 2)) as avg_win,
    cast(round(rt.avg_loss, 2) as decimal(18, 2)) as avg_loss,
    round(coalesce(rt.gross_win, 0) / nullif(abs(rt.gross_loss), 0), 4) as profit_factor,
    cast(round(days.total_pnl / nullif(rt.trades, 0), 2) as decimal(18, 2)) as expectancy,
    cast(days.total_pnl as decimal(18, 2)) as total_pnl,
    cast(drawdowns.max_drawdown as decimal(18, 2)) as max_drawdown,
    days.best_day,
    days.worst_day,
    round(days.mean_d / nullif(days.sd_d, 0) * sqrt(252), 4) as sharpe,
    round(days.mean_d / nullif(days.downside_d, 0) * sqrt(252), 4) as sortino,
    round(days.total_pnl / coalesce(capital.trading_capital, {{ env_var('RISK_TRADING_CAPITAL', '5000000') }}), 6)
        as return_on_capital,
    coalesce(rt.exits_take_profit, 0) as exits_take_profit,
    coalesce(rt.exits_stop_loss, 0) as exits_stop_loss,
    coalesce(rt.exits_reversal, 0) as exits_reversal,
    coalesce(rt.exits_close, 0) as exits_close,
    coalesce(rt.exits_daily_loss_limit, 0) as exits_daily_loss_limit,
    coalesce(rt.exits_flatten, 0) as exits_flatten
from days
left join round_trips as rt
    on days.mode = rt.mode and days.variant = rt.variant
left join drawdowns
    on days.mode = drawdowns.mode and days.variant = drawdowns.variant
left join capital
    on days.mode = capital.mode and days.variant = capital.variant
