{#
    Layers are schemas named exactly `bronze`, `silver`, `gold`, `marts` (not dbt's default
    `<target schema>_<custom schema>`): on DuckDB they are the working copy's schemas, and on Trino
    they are the Iceberg namespaces of the lake itself, the same names the PyIceberg write-back uses.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
