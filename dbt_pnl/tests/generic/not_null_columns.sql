{#- Fails with one row per listed column that has nulls, naming the column and the count:
    one test per model instead of one per column (each test is an asset check in Dagster,
    and every check costs event-log writes on each run). -#}
{% test not_null_columns(model, columns) %}
    {% for column in columns %}
    select '{{ column }}' as null_column, count(*) as null_rows
    from {{ model }}
    where {{ column }} is null
    having count(*) > 0
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
{% endtest %}
