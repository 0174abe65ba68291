{#- Rows of `source('alphagen', table_name)` that belong to the latest version of their
    (mode, variant, session_date), with that variant. The latest version is the variant's
    max(version) in normalized_ticks (every run writes ticks; see stg_latest_versions), so a
    table with no rows in that version reads as empty for that day instead of falling back to
    an older replay. -#}
{% macro latest_version_rows(table_name) -%}
    select src.*, latest.variant
    from {{ source('alphagen', table_name) }} as src
    inner join {{ ref('stg_latest_versions') }} as latest
        on src.mode = latest.mode
        and src.session_date = latest.session_date
        and src.version = latest.version
{%- endmacro %}
