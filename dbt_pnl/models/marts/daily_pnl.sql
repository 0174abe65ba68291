-- One row per (trade_date, mode, variant) the engine ran (every session present in the latest
-- normalized_ticks of the variant), trading or not: a day without fills has zeros, not a
-- missing row.
--   realized_pnl: sum of pnl_contrib of FILLED executions, net of fees, in dollars (cents)
--   fees:         sum of fees of FILLED executions
--   trades:       completed round trips (positions with an exit fill), from `trades`
--   wins/losses:  round trips whose P/L (sum of their fills' pnl_contrib) is > 0 / < 0
--   variant:      the named strategy and risk settings of the version (stg_latest_versions)
--   trading_capital: RISK_TRADING_CAPITAL the version ran with (its versions row), else the
--                 environment's (default 5,000,000): return_on_capital's denominator
with sessions as (
    select mode, variant, session_date, version from {{ ref('stg_latest_versions') }}
),

capital as (
    select
        mode,
        session_date,
        version,
        max(try_cast(json_extract_string(settings, '$.RISK_TRADING_CAPITAL') as double)) as trading_capital
    from {{ source('alphagen', 'versions') }}
    group by mode, session_date, version
),

fills as (
    select
        mode,
        variant,
        session_date,
        sum(pnl_contrib) as realized_pnl,
        sum(fees) as fees
    from {{ ref('stg_executions') }}
    where is_fill
    group by mode, variant, session_date
),

round_trips as (
    select
        mode,
        variant,
        trade_date as session_date,
        count(*) as trades,
        count(*) filter (where pnl > 0) as wins,
        count(*) filter (where pnl < 0) as losses
    from {{ ref('trades') }}
    group by mode, variant, trade_date
)

select
    sessions.session_date as trade_date,
    sessions.mode,
    cast(round(coalesce(fills.realized_pnl, 0), 2) as decimal(18, 2)) as realized_pnl,
    cast(round(coalesce(fills.fees, 0), 2) as decimal(18, 2)) as fees,
    cast(coalesce(round_trips.trades, 0) as bigint) as trades,
    cast(coalesce(round_trips.wins, 0) as bigint) as wins,
    cast(coalesce(round_trips.losses, 0) as bigint) as losses,
    sessions.variant,
    sessions.version,
    cast(coalesce(capital.trading_capital, {{ env_var('RISK_TRADING_CAPITAL', '5000000') }}) as double)
        as trading_capital
from sessions
left join capital
    on sessions.mode = capital.mode
    and sessions.session_date = capital.session_date
    and sessions.version = capital.version
left join fills
    on sessions.mode = fills.mode
    and sessions.variant = fills.variant
    and sessions.session_date = fills.session_date
left join round_trips
    on sessions.mode = round_trips.mode
    and sessions.variant = round_trips.variant
    and sessions.session_date = round_trips.session_date
