-- one row per (mode, variant, trade_date), over daily_pnl (every session the engine ran; a
-- session without trades is a 0). The formulas: macros/performance.sql (equity_curve_rows).
{{ equity_curve_rows(ref('daily_pnl')) }}
