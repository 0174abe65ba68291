with latest as ({{ latest_version_rows('trade_intents') }})

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(version as varchar) as version,
    cast(intent_id as varchar) as intent_id,
    cast(signal_id as varchar) as signal_id,
    cast(est_timestamp as timestamptz) as est_timestamp,
    cast(action as varchar) as action,
    cast(option_symbol as varchar) as option_symbol,
    cast(qty as bigint) as qty,
    cast(limit_price as double) as limit_price,
    cast(stop_loss as double) as stop_loss,
    cast(take_profit as double) as take_profit,
    cast(reason as varchar) as reason,
    cast(run_id as varchar) as run_id,
    cast(written_at as timestamptz) as written_at
from latest
