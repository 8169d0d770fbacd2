{%- set window_days = var('metrics_window_days') -%}
{%- set bin_minutes = var('agp_bin_minutes') -%}

-- Ambulatory Glucose Profile (IDC AGP report v4): every reading of the 14 local days ending at
-- window_end_date, folded onto one local day and binned by time of day (each reading's own
-- local time); per bin the 5th, 25th, 50th, 75th and 95th percentiles, computed exactly with
-- the portable percentile_cont macro (linear interpolation, R type 7, as iglu).
with

readings as (

    select * from {{ ref('fct_glucose_readings') }}
    where not is_sensor_error

),

subjects as (

    select * from {{ ref('dim_subject') }}

),

day_offsets as (

    select generated_number - 1 as day_offset
    from ({{ dbt.generate_series(window_days) }}) as numbers

),

-- Each reading belongs to the windows ending on its local date and the 13 days after it
-- (up to the subject's last local date).
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

    select windowed_readings.*
    from windowed_readings
    inner join subjects
        on windowed_readings.site_id = subjects.site_id
    where windowed_readings.window_end_date <= subjects.last_local_date

),

ranked as (

    select
        site_id,
        window_end_date,
        time_bin,
        glucose_mg_dl,
        {{ cascade.percentile_ranks('glucose_mg_dl', 'site_id, window_end_date, time_bin') }}
    from readings_in_span

),

percentiles as (

    select
        site_id,
        window_end_date,
        time_bin,
        count(*) as reading_count,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.05) }} as p05_glucose_mg_dl,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.25) }} as p25_glucose_mg_dl,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.50) }} as p50_glucose_mg_dl,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.75) }} as p75_glucose_mg_dl,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.95) }} as p95_glucose_mg_dl
    from ranked
    group by site_id, window_end_date, time_bin

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
        p95_glucose_mg_dl
    from percentiles

)

select * from final
