{# Milliseconds since 1970-01-01T00:00:00Z of a timestamp with time zone, as a BIGINT. #}
{% macro epoch_ms(ts) -%}
    {{ return(adapter.dispatch('epoch_ms', 'cascade')(ts)) }}
{%- endmacro %}

{% macro default__epoch_ms(ts) -%}
    cast(round(extract(epoch from {{ ts }}) * 1000) as {{ dbt.type_bigint() }})
{%- endmacro %}

{% macro duckdb__epoch_ms(ts) -%}
    epoch_ms({{ ts }})
{%- endmacro %}

{% macro trino__epoch_ms(ts) -%}
    cast(round(to_unixtime({{ ts }}) * 1000) as bigint)
{%- endmacro %}


{# Minutes from `earlier` to `later` (both timestamps with time zone), as a double. #}
{% macro minutes_between(earlier, later) -%}
    ({{ cascade.as_double(cascade.epoch_ms(later) ~ ' - ' ~ cascade.epoch_ms(earlier)) }} / 60000.0)
{%- endmacro %}

