{# A 64-bit hash of a string as DECIMAL(38, 0): summed over a window frame it fingerprints the set
   of values in the frame (independent of order), exactly, on every engine. #}
{% macro hash_number(expr) -%}
    {{ return(adapter.dispatch('hash_number', 'cascade')(expr)) }}
{%- endmacro %}

{% macro default__hash_number(expr) -%}
    cast(from_big_endian_64(xxhash64(to_utf8({{ expr }}))) as decimal(38, 0))
{%- endmacro %}

{% macro duckdb__hash_number(expr) -%}
    cast(hash({{ expr }}) as decimal(38, 0))
{%- endmacro %}
