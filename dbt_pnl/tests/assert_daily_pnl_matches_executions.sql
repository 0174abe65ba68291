{{ config(meta={"dagster": {"ref": {"name": "daily_pnl"}}}) }}
-- daily_pnl.realized_pnl (and fees) must equal, to the cent, the sum of the day's executions'
-- pnl_contrib (fees) in the latest version, recomputed here straight from the sources with
-- its own latest-version rule rather than from the staging models. All statuses are summed:
-- events other than fills carry no P/L, so a non-zero one shows up here too. A day present on
-- one side only fails as well. Returns the offending days.
with latest as (
    select mode, session_date, max(version) as version
    from {{ source('alphagen', 'normalized_ticks') }}
    group by mode, session_date
),

expected as (
    select
        latest.mode,
        latest.session_date,
        coalesce(sum(e.pnl_contrib), 0) as realized_pnl,
        coalesce(sum(e.fees) filter (where e.status = 'FILLED'), 0) as fees
    from latest
    left join {{ source('alphagen', 'executions') }} as e
        on e.mode = latest.mode
        and e.session_date = latest.session_date
        and e.version = latest.version
    group by latest.mode, latest.session_date
)

select
    coalesce(expected.mode, d.mode) as mode,
    coalesce(expected.session_date, d.trade_date) as trade_date,
    expected.realized_pnl as expected_realized_pnl,
    d.realized_pnl,
    expected.fees as expected_fees,
    d.fees
from expected
full outer join {{ ref('daily_pnl') }} as d
    on expected.mode = d.mode
    and expected.session_date = d.trade_date
where d.trade_date is null
    or expected.session_date is null
    or abs(round(expected.realized_pnl, 2) - d.realized_pnl) >= 0.005
    or abs(round(expected.fees, 2) - d.fees) >= 0.005
