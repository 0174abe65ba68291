{#- Fails for each combination of `combination_of_columns` that occurs more than once
    (the same test as dbt_utils', kept local so the project needs no packages). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
    select {{ combination_of_columns | join(', ') }}, count(*) as n_rows
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
{% endtest %}
