{#
    8-byte floating point. Not dbt.type_float(): on DuckDB that renders FLOAT, a 4-byte REAL.
#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double', 'cascade')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro duckdb__type_double() -%}
    double
{%- endmacro %}

{% macro trino__type_double() -%}
    double
{%- endmacro %}


{# `expr` as a double: every division in Cascade goes through this (Trino divides integers as integers). #}
{% macro as_double(expr) -%}
    cast({{ expr }} as {{ cascade.type_double() }})
{%- endmacro %}


{#
    An exact, order-independent sum of a floating-point expression: each term is rounded to
    `scale` decimals as a DECIMAL, summed exactly, and returned as a double. A plain SUM of doubles
    depends on the order the engine adds them in (threads, segment trees), so re-running an
    unchanged model could differ in the last bit and rewrite an unchanged Iceberg table.
#}
{% macro exact_sum(expr, scale=6) -%}
    cast(sum(cast({{ expr }} as decimal(18, {{ scale }}))) as {{ cascade.type_double() }})
{%- endmacro %}
