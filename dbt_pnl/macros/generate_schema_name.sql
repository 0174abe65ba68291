{#- A model's custom schema (`+schema: staging`) is used as is, not prefixed with the target
    schema: staging views live in `staging`, marts in the target schema `main`. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
