-- One row per completed round trip (a position with at least one exit fill), latest version
-- of each (mode, variant, session_date) only. Only FILLED executions count.
--   entry_price: the credit received per contract (qty-weighted over the entry fills)
--   exit_price:  the debit paid per contract (qty-weighted over the exit fills)
--   pnl:         sum of the position's pnl_contrib = (credit - debit) * 100 * qty - all fees
-- An exit with no entry fill in the same version keeps its row with NULL entry columns, so
-- the not_null tests on trades flag it instead of the trade silently vanishing.
with fills as (
    select * from {{ ref('stg_executions') }} where is_fill
),

entries as (
    select
        mode,
        variant,
        session_date,
        position_id,
        first(option_symbol order by est_timestamp, execution_id) as option_symbol,
        first(intent_id order by est_timestamp, execution_id) as entry_intent_id,
        sum(qty) as qty,
        min(est_timestamp) as entry_time,
        sum(fill_price * qty) / nullif(sum(qty), 0) as entry_price
    from fills
    where is_entry_fill
    group by mode, variant, session_date, position_id
),

exits as (
    select
        mode,
        variant,
        session_date,
        version,
        position_id,
        first(option_symbol order by est_timestamp, execution_id) as option_symbol,
        max(est_timestamp) as exit_time,
        sum(fill_price * qty) / nullif(sum(qty), 0) as exit_price,
        last(exit_reason order by est_timestamp, execution_id) as exit_reason
    from fills
    where is_exit_fill
    group by mode, variant, session_date, version, position_id
),

totals as (
    select
        mode,
        variant,
        session_date,
        position_id,
        sum(fees) as fees,
        sum(pnl_contrib) as pnl
    from fills
    group by mode, variant, session_date, position_id
)

select
    exits.session_date as trade_date,
    exits.mode,
    exits.position_id,
    coalesce(entries.option_symbol, exits.option_symbol) as option_symbol,
    intents.signal_id,
    entries.qty,
    entries.entry_time,
    cast(round(entries.entry_price, 4) as decimal(18, 4)) as entry_price,
    exits.exit_time,
    cast(round(exits.exit_price, 4) as decimal(18, 4)) as exit_price,
    exits.exit_reason,
    cast(round(totals.fees, 2) as decimal(18, 2)) as fees,
    cast(round(totals.pnl, 2) as decimal(18, 2)) as pnl,
    round((epoch(exits.exit_time) - epoch(entries.entry_time)) / 60.0, 2) as holding_minutes,
    exits.variant,
    exits.version
from exits
left join entries
    on exits.mode = entries.mode
    and exits.variant = entries.variant
    and exits.session_date = entries.session_date
    and exits.position_id = entries.position_id
inner join totals
    on exits.mode = totals.mode
    and exits.variant = totals.variant
    and exits.session_date = totals.session_date
    and exits.position_id = totals.position_id
left join {{ ref('stg_trade_intents') }} as intents
    on entries.mode = intents.mode
    and entries.variant = intents.variant
    and entries.session_date = intents.session_date
    and entries.entry_intent_id = intents.intent_id
