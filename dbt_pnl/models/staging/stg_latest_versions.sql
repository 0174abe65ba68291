-- One row per (mode, variant, session_date) the engine ran: the version readers use for it.
-- A version's variant is its `versions` row's; a version without one (written before versions
-- were recorded) is base. The latest version is the variant's max(version) in normalized_ticks,
-- because every run writes ticks.
with ran as (
    select mode, session_date, version, count(*) as slices
    from {{ source('alphagen', 'normalized_ticks') }}
    group by mode, session_date, version
),

named as (
    select distinct mode, session_date, version, variant
    from {{ source('alphagen', 'versions') }}
),

ran_by_variant as (
    select ran.*, coalesce(named.variant, 'base') as variant
    from ran
    left join named
        on ran.mode = named.mode
        and ran.session_date = named.session_date
        and ran.version = named.version
)

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(max(version) as varchar) as version,
    cast(sum(slices) as bigint) as slices
from ran_by_variant
group by mode, variant, session_date
