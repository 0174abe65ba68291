with latest as ({{ latest_version_rows('signals') }})

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(version as varchar) as version,
    cast(signal_id as varchar) as signal_id,
    cast(slice_id as varchar) as slice_id,
    cast(est_timestamp as timestamptz) as est_timestamp,
    cast(signal_type as varchar) as signal_type,
    cast(option_symbol as varchar) as option_symbol,
    cast(underlying_price as double) as underlying_price,
    cast(vwap as double) as vwap,
    cast(ma9 as double) as ma9,
    cast(rationale as varchar) as rationale,
    cast(cooldown_until as timestamptz) as cooldown_until,
    cast(acted as boolean) as acted,
    cast(drop_reason as varchar) as drop_reason,
    cast(run_id as varchar) as run_id,
    cast(written_at as timestamptz) as written_at
from latest
