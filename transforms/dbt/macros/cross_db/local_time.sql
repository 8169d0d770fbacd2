{#
    A reading's local wall-clock time: its UTC instant shifted by its own UTC offset (minutes),
    as a timestamp WITHOUT time zone. Per record, never per site: people travel and clocks change.
#}
{% macro local_timestamp(ts, offset_minutes) -%}
    {{ return(adapter.dispatch('local_timestamp', 'cascade')(ts, offset_minutes)) }}
{%- endmacro %}

{% macro default__local_timestamp(ts, offset_minutes) -%}
    {{ dbt.dateadd('minute', offset_minutes, 'cast(' ~ ts ~ ' at time zone \'UTC\' as ' ~ dbt.type_timestamp() ~ ')') }}
{%- endmacro %}

{% macro duckdb__local_timestamp(ts, offset_minutes) -%}
    (timezone('UTC', {{ ts }}) + to_minutes(cast({{ offset_minutes }} as bigint)))
{%- endmacro %}

{% macro trino__local_timestamp(ts, offset_minutes) -%}
    date_add('minute', {{ offset_minutes }}, cast({{ ts }} at time zone 'UTC' as timestamp(6)))
{%- endmacro %}

