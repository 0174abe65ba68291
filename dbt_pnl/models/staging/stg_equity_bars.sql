with latest as ({{ latest_version_rows('equity_bars') }})

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(version as varchar) as version,
    cast(symbol as varchar) as symbol,
    cast(est_timestamp as timestamptz) as est_timestamp,
    cast(open as double) as open,
    cast(high as double) as high,
    cast(low as double) as low,
    cast(close as double) as close,
    cast(volume as double) as volume,
    cast(bar_vwap as double) as bar_vwap,
    cast(day_vwap as double) as day_vwap,
    cast(transactions as bigint) as transactions,
    cast(source as varchar) as source,
    cast(run_id as varchar) as run_id,
    cast(written_at as timestamptz) as written_at
from latest
