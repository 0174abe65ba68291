with latest as ({{ latest_version_rows('position_state') }})

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(version as varchar) as version,
    cast(slice_id as varchar) as slice_id,
    cast(est_timestamp as timestamptz) as est_timestamp,
    cast(symbol as varchar) as symbol,
    cast(net_quantity as bigint) as net_quantity,
    cast(avg_price as double) as avg_price,
    cast(mark as double) as mark,
    cast(unrealized_pnl as double) as unrealized_pnl,
    cast(realized_pnl as double) as realized_pnl,
    cast(stop_loss as double) as stop_loss,
    cast(take_profit as double) as take_profit,
    cast(run_id as varchar) as run_id,
    cast(written_at as timestamptz) as written_at
from latest
