-- one row per (mode, variant), over daily_pnl and trades. The formulas, shared with
-- `alphagen report --stats --start D --end D`: macros/performance.sql (performance_summary_rows).
{{ performance_summary_rows(
    daily=ref('daily_pnl'),
    trades=ref('trades')
) }}
