with latest as ({{ latest_version_rows('executions') }})

select
    cast(mode as varchar) as mode,
    cast(variant as varchar) as variant,
    cast(session_date as date) as session_date,
    cast(version as varchar) as version,
    cast(execution_id as varchar) as execution_id,
    cast(intent_id as varchar) as intent_id,
    cast(position_id as varchar) as position_id,
    cast(order_id as varchar) as order_id,
    cast(est_timestamp as timestamptz) as est_timestamp,
    cast(option_symbol as varchar) as option_symbol,
    cast(action as varchar) as action,
    cast(status as varchar) as status,
    cast(fill_price as double) as fill_price,
    cast(qty as bigint) as qty,
    cast(fees as double) as fees,
    cast(pnl_contrib as double) as pnl_contrib,
    cast(exit_reason as varchar) as exit_reason,
    status = 'FILLED' as is_fill,
    status = 'FILLED' and action = 'SELL_TO_OPEN' as is_entry_fill,
    status = 'FILLED' and action = 'BUY_TO_CLOSE' as is_exit_fill,
    cast(run_id as varchar) as run_id,
    cast(written_at as timestamptz) as written_at
from latest
