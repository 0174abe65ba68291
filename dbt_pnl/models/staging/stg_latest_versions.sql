-- One row per (mode, session_date) the engine ran: the version readers use for that day.
-- The latest version is max(version) in normalized_ticks, because every run writes ticks.
select
    cast(mode as varchar) as mode,
    cast(session_date as date) as session_date,
    cast(max(version) as varchar) as version,
    count(*) as slices
from {{ source('alphagen', 'normalized_ticks') }}
group by mode, session_date
