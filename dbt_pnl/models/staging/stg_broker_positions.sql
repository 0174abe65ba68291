with latest as ({{ latest_version_rows('broker_positions') }})

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(version as varchar) as version,
    cast(est_timestamp as timestamptz) as est_timestamp,
    cast(symbol as varchar) as symbol,
    cast(quantity as bigint) as quantity,
    cast(avg_price as double) as avg_price,
    cast(market_value as double) as market_value,
    cast(broker as varchar) as broker,
    cast(run_id as varchar) as run_id,
    cast(written_at as timestamptz) as written_at
from latest
