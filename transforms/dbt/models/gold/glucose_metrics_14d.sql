{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['site_id', 'window_end_date'],
        on_schema_change='fail',
        pre_hook="{{ cascade.delete_superseded_windows() }}"
    )
}}
{%- set window_days = var('metrics_window_days') -%}
{%- set frame = 'partition by site_id order by local_date rows between ' ~ (window_days - 1) ~ ' preceding and current row' -%}

-- Rolling windows of the last 14 local days (window_end_date inclusive), one per subject and
-- local date of its span. Metrics come from the summed daily counts and sums, so they equal a
-- computation over the window's readings exactly. Incremental: only the windows whose version
-- (the days they hold, see macros/incremental/sync.sql) the target lacks are (re)inserted; the
-- window sums over the subject's day spine are cheap, the saving is in the rows written.
with

windows_to_build as (

    {{ cascade.glucose_windows_to_build() }}

),

subject_days as (

    select * from {{ ref('int_subject_days') }}

),

daily as (

    select * from {{ ref('glucose_metrics_daily') }}

),

days as (

    select
        subject_days.site_id,
        subject_days.local_date,
        subject_days.sensor_interval_minutes,
        cast(1440 / subject_days.sensor_interval_minutes as {{ dbt.type_int() }}) as nominal_readings_per_day,
        case when daily.reading_count > 0 then 1 else 0 end as has_readings,
        coalesce(daily.expected_reading_count, cast(1440 / subject_days.sensor_interval_minutes as {{ dbt.type_int() }})) as expected_reading_count,
        coalesce(daily.sensor_error_count, 0) as sensor_error_count,
        {%- for column in cascade.glucose_sum_columns() %}
        coalesce(daily.{{ column }}, 0) as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from subject_days
    left join daily
        on subject_days.site_id = daily.site_id
        and subject_days.local_date = daily.local_date

),

windowed as (

    select
        site_id,
        local_date as window_end_date,
        cast({{ dbt.dateadd('day', -(window_days - 1), 'local_date') }} as date) as window_start_date,
        sensor_interval_minutes,
        cast(sum(has_readings) over ({{ frame }}) as {{ dbt.type_int() }}) as days_with_readings,
        -- days of the window before the subject's first reading count as expected, not received
        cast(
            sum(expected_reading_count) over ({{ frame }})
            + ({{ window_days }} - count(*) over ({{ frame }})) * nominal_readings_per_day
            as {{ dbt.type_bigint() }}
        ) as expected_reading_count,
        cast(sum(sensor_error_count) over ({{ frame }}) as {{ dbt.type_bigint() }}) as sensor_error_count,
        {%- for column in cascade.glucose_sum_columns() %}
        {%- if column.endswith('_risk_sum') %}
        cast(sum(cast({{ column }} as decimal(18, 6))) over ({{ frame }}) as {{ cascade.type_double() }}) as {{ column }}
        {%- else %}
        cast(sum({{ column }}) over ({{ frame }}) as {{ dbt.type_bigint() }}) as {{ column }}
        {%- endif %}{{ ',' if not loop.last }}
        {%- endfor %}
    from days

),

windowed_metrics as (

    select
        site_id,
        window_end_date,
        window_start_date,
        sensor_interval_minutes,
        days_with_readings,
        expected_reading_count,
        reading_count,
        sensor_error_count,
        {{ cascade.cgm_activity() }},
        {{ cascade.glucose_metrics_from_sums() }},
        {%- for column in cascade.glucose_sum_columns() if column != 'reading_count' %}
        {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    from windowed

),

final as (

    select
        windowed_metrics.*,
        windows_to_build.window_version as _cascade_window_version
    from windowed_metrics
    inner join windows_to_build
        on windowed_metrics.site_id = windows_to_build.site_id
        and windowed_metrics.window_end_date = windows_to_build.window_end_date

)

select * from final
