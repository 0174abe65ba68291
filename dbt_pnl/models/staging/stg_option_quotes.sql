with latest as ({{ latest_version_rows('option_quotes') }})

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(version as varchar) as version,
    cast(option_symbol as varchar) as option_symbol,
    cast(est_timestamp as timestamptz) as est_timestamp,
    cast(underlying as varchar) as underlying,
    cast(expiry as date) as expiry,
    cast("right" as varchar) as option_right,
    cast(strike as double) as strike,
    cast(bid as double) as bid,
    cast(ask as double) as ask,
    cast(last as double) as last,
    cast(open as double) as open,
    cast(high as double) as high,
    cast(low as double) as low,
    cast(volume as double) as volume,
    cast(quote_kind as varchar) as quote_kind,
    cast(source as varchar) as source,
    cast(quoted_at as timestamptz) as quoted_at,
    cast(run_id as varchar) as run_id,
    cast(written_at as timestamptz) as written_at
from latest
