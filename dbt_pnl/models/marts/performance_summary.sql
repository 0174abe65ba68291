-- one row per (mode, variant), over daily_pnl and trades. The formulas, shared with
-- `alphagen report --stats --start D --end D`: macros/performance.sql (performance_summary_rows).
-- Every round trip is `base` until trades records its variant.
{{ performance_summary_rows(
    daily=ref('daily_pnl'),
    trades="(select *, 'base' as variant from " ~ ref('trades') ~ ")",
    trading_capital=env_var('RISK_TRADING_CAPITAL', '5000000')
) }}
