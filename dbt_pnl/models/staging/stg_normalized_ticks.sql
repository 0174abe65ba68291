with latest as ({{ latest_version_rows('normalized_ticks') }})

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(version as varchar) as version,
    cast(slice_id as varchar) as slice_id,
    cast(period_start as timestamptz) as period_start,
    cast(underlying_price as double) as underlying_price,
    cast(vwap as double) as vwap,
    cast(ma9 as double) as ma9,
    cast(vwap_source as varchar) as vwap_source,
    cast(side as integer) as side,
    cast(quotes_in_slice as integer) as quotes_in_slice,
    cast(held_symbol as varchar) as held_symbol,
    cast(held_bid as double) as held_bid,
    cast(held_ask as double) as held_ask,
    cast(stale as boolean) as stale,
    cast(run_id as varchar) as run_id,
    cast(written_at as timestamptz) as written_at
from latest
