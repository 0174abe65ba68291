{#- The formulas of the analytics marts, written once: the marts `equity_curve` and
    `performance_summary` call these macros over the whole of `daily_pnl` and `trades`, and
    `alphagen report --stats --start D --end D` renders the same macros (plain Jinja: no dbt
    function may appear here) over the rows of a date range.

    daily:   a relation with mode, variant, trade_date, realized_pnl (one row per session the
             engine ran; a session without trades is a 0) and trading_capital (the capital
             the session ran with)
    trades:  a relation with mode, variant, pnl, exit_reason (one row per round trip) -#}

{#- One row per (mode, variant, trade_date):
      cumulative_pnl: running sum of daily_pnl in date order
      peak:           running max of cumulative_pnl, starting at 0 (before the first session)
      drawdown:       cumulative_pnl - peak (<= 0) -#}
{% macro equity_curve_rows(daily) -%}
    with daily as (
        select
            mode,
            variant,
            trade_date,
            realized_pnl as daily_pnl,
            sum(realized_pnl) over (
                partition by mode, variant order by trade_date rows between unbounded preceding and current row
            ) as cumulative_pnl
        from {{ daily }}
    )

    select
        mode,
        variant,
        trade_date,
        daily_pnl,
        cumulative_pnl,
        greatest(0, max(cumulative_pnl) over (
            partition by mode, variant order by trade_date rows between unbounded preceding and current row
        )) as peak,
        cumulative_pnl - greatest(0, max(cumulative_pnl) over (
            partition by mode, variant order by trade_date rows between unbounded preceding and current row
        )) as drawdown
    from daily
{%- endmacro %}

{#- One row per (mode, variant). d = daily P/L of each session. Undefined ratios are NULL,
    never infinite:
      win_rate = wins / trades; avg_win, avg_loss = mean P/L of winning, losing round trips;
      profit_factor = sum of winning round trips / |sum of losing ones|;
      expectancy = total_pnl / trades; max_drawdown = min(drawdown of the equity curve);
      sharpe = mean(d) / stddev_samp(d) * sqrt(252);
      sortino = mean(d) / sqrt(mean(min(d, 0)^2)) * sqrt(252);
      return_on_capital = total_pnl / the trading capital of the last session;
      exits_<reason>: round trips closed for that reason. -#}
{% macro performance_summary_rows(daily, trades) -%}
    with days as (
        select
            mode,
            variant,
            min(trade_date) as first_date,
            max(trade_date) as last_date,
            count(*) as sessions,
            sum(realized_pnl) as total_pnl,
            max(realized_pnl) as best_day,
            min(realized_pnl) as worst_day,
            avg(realized_pnl) as mean_d,
            stddev_samp(realized_pnl) as sd_d,
            sqrt(avg(power(least(realized_pnl, 0), 2))) as downside_d,
            arg_max(trading_capital, trade_date) as trading_capital
        from {{ daily }}
        group by mode, variant
    ),

    round_trips as (
        select
            mode,
            variant,
            count(*) as trades,
            count(*) filter (where pnl > 0) as wins,
            count(*) filter (where pnl < 0) as losses,
            avg(pnl) filter (where pnl > 0) as avg_win,
            avg(pnl) filter (where pnl < 0) as avg_loss,
            sum(pnl) filter (where pnl > 0) as gross_win,
            sum(pnl) filter (where pnl < 0) as gross_loss,
            count(*) filter (where exit_reason = 'take_profit') as exits_take_profit,
            count(*) filter (where exit_reason = 'stop_loss') as exits_stop_loss,
            count(*) filter (where exit_reason = 'reversal') as exits_reversal,
            count(*) filter (where exit_reason = 'close') as exits_close,
            count(*) filter (where exit_reason = 'daily_loss_limit') as exits_daily_loss_limit,
            count(*) filter (where exit_reason = 'flatten') as exits_flatten
        from {{ trades }}
        group by mode, variant
    ),

    drawdowns as (
        select mode, variant, min(drawdown) as max_drawdown
        from ({{ equity_curve_rows(daily) }})
        group by mode, variant
    )

    select
        days.mode,
        days.variant,
        days.first_date,
        days.last_date,
        days.sessions,
        coalesce(rt.trades, 0) as trades,
        coalesce(rt.wins, 0) as wins,
        coalesce(rt.losses, 0) as losses,
        round(rt.wins / nullif(rt.trades, 0), 4) as win_rate,
        cast(round(rt.avg_win, 2) as decimal(18, 2)) as avg_win,
        cast(round(rt.avg_loss, 2) as decimal(18, 2)) as avg_loss,
        round(coalesce(rt.gross_win, 0) / nullif(abs(rt.gross_loss), 0), 4) as profit_factor,
        cast(round(days.total_pnl / nullif(rt.trades, 0), 2) as decimal(18, 2)) as expectancy,
        cast(days.total_pnl as decimal(18, 2)) as total_pnl,
        cast(drawdowns.max_drawdown as decimal(18, 2)) as max_drawdown,
        days.best_day,
        days.worst_day,
        round(days.mean_d / nullif(days.sd_d, 0) * sqrt(252), 4) as sharpe,
        round(days.mean_d / nullif(days.downside_d, 0) * sqrt(252), 4) as sortino,
        round(days.total_pnl / days.trading_capital, 6) as return_on_capital,
        coalesce(rt.exits_take_profit, 0) as exits_take_profit,
        coalesce(rt.exits_stop_loss, 0) as exits_stop_loss,
        coalesce(rt.exits_reversal, 0) as exits_reversal,
        coalesce(rt.exits_close, 0) as exits_close,
        coalesce(rt.exits_daily_loss_limit, 0) as exits_daily_loss_limit,
        coalesce(rt.exits_flatten, 0) as exits_flatten
    from days
    left join round_trips as rt
        on days.mode = rt.mode and days.variant = rt.variant
    left join drawdowns
        on days.mode = drawdowns.mode and days.variant = drawdowns.variant
{%- endmacro %}
