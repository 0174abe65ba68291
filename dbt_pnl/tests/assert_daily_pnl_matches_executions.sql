{{ config(meta={"dagster": {"ref": {"name": "daily_pnl"}}}) }}
-- daily_pnl.realized_pnl (and fees) must equal, to the cent, the sum of the day's executions'
-- pnl_contrib (fees) in the latest version of its variant, recomputed here straight from the
-- sources with its own latest-version rule (a version without a versions row is base) rather
-- than from the staging models. All statuses are summed: events other than fills carry no
-- P/L, so a non-zero one shows up here too. A day present on one side only fails as well.
-- Returns the offending days.
with ran as (
    select t.mode, t.session_date, t.version, coalesce(v.variant, 'base') as variant
    from {{ source('alphagen', 'normalized_ticks') }} as t
    left join {{ source('alphagen', 'versions') }} as v
        on t.mode = v.mode
        and t.session_date = v.session_date
        and t.version = v.version
),

latest as (
    select mode, variant, session_date, max(version) as version
    from ran
    group by mode, variant, session_date
),

expected as (
    select
        latest.mode,
        latest.variant,
        latest.session_date,
        coalesce(sum(e.pnl_contrib), 0) as realized_pnl,
        coalesce(sum(e.fees) filter (where e.status = 'FILLED'), 0) as fees
    from latest
    left join {{ source('alphagen', 'executions') }} as e
        on e.mode = latest.mode
        and e.session_date = latest.session_date
        and e.version = latest.version
    group by latest.mode, latest.variant, latest.session_date
)

select
    coalesce(expected.mode, d.mode) as mode,
    coalesce(expected.variant, d.variant) as variant,
    coalesce(expected.session_date, d.trade_date) as trade_date,
    expected.realized_pnl as expected_realized_pnl,
    d.realized_pnl,
    expected.fees as expected_fees,
    d.fees
from expected
full outer join {{ ref('daily_pnl') }} as d
    on expected.mode = d.mode
    and expected.variant = d.variant
    and expected.session_date = d.trade_date
where d.trade_date is null
    or expected.session_date is null
    or abs(round(expected.realized_pnl, 2) - d.realized_pnl) >= 0.005
    or abs(round(expected.fees, 2) - d.fees) >= 0.005
