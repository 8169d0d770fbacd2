{# ISO day of week of a date or timestamp: 1 = Monday ... 7 = Sunday. #}
{% macro iso_day_of_week(value) -%}
    {{ return(adapter.dispatch('iso_day_of_week', 'cascade')(value)) }}
{%- endmacro %}

{% macro default__iso_day_of_week(value) -%}
    cast(extract(isodow from {{ value }}) as {{ dbt.type_int() }})
{%- endmacro %}

{% macro duckdb__iso_day_of_week(value) -%}
    cast(isodow({{ value }}) as integer)
{%- endmacro %}

{% macro trino__iso_day_of_week(value) -%}
    cast(day_of_week({{ value }}) as integer)
{%- endmacro %}


{# English day name ('Monday' ... 'Sunday'), independent of any session locale. #}
{% macro day_of_week_name(value) -%}
    {{ return(adapter.dispatch('day_of_week_name', 'cascade')(value)) }}
{%- endmacro %}

{% macro default__day_of_week_name(value) -%}
    case {{ cascade.iso_day_of_week(value) }}
        when 1 then 'Monday'
        when 2 then 'Tuesday'
        when 3 then 'Wednesday'
        when 4 then 'Thursday'
        when 5 then 'Friday'
        when 6 then 'Saturday'
        when 7 then 'Sunday'
    end
{%- endmacro %}

{% macro duckdb__day_of_week_name(value) -%}
    dayname({{ value }})
{%- endmacro %}

{% macro trino__day_of_week_name(value) -%}
    date_format({{ value }}, '%W')
{%- endmacro %}
