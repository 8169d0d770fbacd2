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
{%- set bin_minutes = var('agp_bin_minutes') -%}

-- Ambulatory Glucose Profile (IDC AGP report v4): every reading of the 14 local days ending at
-- window_end_date, folded onto one local day and binned by time of day (each reading's own
-- local time); per bin the 5th, 25th, 50th, 75th and 95th percentiles, computed exactly with
-- the portable percentile_cont macro (linear interpolation, R type 7, as iglu).
-- Incremental: only the windows whose version (the days they hold, see
-- macros/incremental/sync.sql) the target lacks are recomputed, from the readings of their days.
with

day_offsets as (

    select cast(generated_number - 1 as {{ dbt.type_bigint() }}) as day_offset
    from ({{ dbt.generate_series(window_days) }}) as numbers

),

windows_to_build as (

    {{ cascade.glucose_windows_to_build() }}

),

-- The local days whose readings the windows to build hold.
days_needed as (

    select distinct
        windows_to_build.site_id,
        cast({{ dbt.dateadd('day', '-day_offsets.day_offset', 'windows_to_build.window_end_date') }} as date) as local_date
    from windows_to_build
    cross join day_offsets

),

readings as (

    select readings.*
    from {{ ref('fct_glucose_readings') }} as readings
    inner join days_needed
        on readings.site_id = days_needed.site_id
        and readings.local_date = days_needed.local_date
    where not readings.is_sensor_error

),

-- Each reading belongs to the windows ending on its local date and the 13 days after it
-- (up to the subject's last local date): those of them to build.
windowed_readings as (

    select
        readings.site_id,
        cast({{ dbt.dateadd('day', 'day_offsets.day_offset', 'readings.local_date') }} as date) as window_end_date,
        cast(floor(readings.local_minute_of_day / {{ bin_minutes }}.0) as {{ dbt.type_int() }}) as time_bin,
        readings.glucose_mg_dl
    from readings
    cross join day_offsets

),

readings_in_span as (

    select
        windowed_readings.*,
        windows_to_build.window_version
    from windowed_readings
    inner join windows_to_build
        on windowed_readings.site_id = windows_to_build.site_id
        and windowed_readings.window_end_date = windows_to_build.window_end_date

),

ranked as (

    select
        site_id,
        window_end_date,
        time_bin,
        window_version,
        glucose_mg_dl,
        {{ cascade.percentile_ranks('glucose_mg_dl', 'site_id, window_end_date, time_bin') }}
    from readings_in_span

),

percentiles as (

    select
        site_id,
        window_end_date,
        time_bin,
        window_version,
        count(*) as reading_count,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.05) }} as p05_glucose_mg_dl,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.25) }} as p25_glucose_mg_dl,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.50) }} as p50_glucose_mg_dl,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.75) }} as p75_glucose_mg_dl,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.95) }} as p95_glucose_mg_dl
    from ranked
    group by site_id, window_end_date, time_bin, window_version

),

final as (

    select
        site_id,
        window_end_date,
        cast({{ dbt.dateadd('day', -(window_days - 1), 'window_end_date') }} as date) as window_start_date,
        time_bin,
        time_bin * {{ bin_minutes }} as bin_start_minute_of_day,
        {{ dbt.concat([
            "lpad(cast(cast(floor(time_bin * " ~ bin_minutes ~ " / 60.0) as " ~ dbt.type_int() ~ ") as " ~ dbt.type_string() ~ "), 2, '0')",
            "':'",
            "lpad(cast(mod(time_bin * " ~ bin_minutes ~ ", 60) as " ~ dbt.type_string() ~ "), 2, '0')"
        ]) }} as bin_label,
        reading_count,
        p05_glucose_mg_dl,
        p25_glucose_mg_dl,
        p50_glucose_mg_dl,
        p75_glucose_mg_dl,
        p95_glucose_mg_dl,
        window_version as _cascade_window_version
    from percentiles

)

select * from final
