-- Glucose by local hour of day and day of week (each reading's own local time), over each
-- subject's whole history: where in the week the highs and lows cluster. Percentages are of readings.
with

readings as (

    select * from {{ ref('fct_glucose_readings') }}
    where not is_sensor_error

),

dates as (

    select * from {{ ref('dim_date') }}

),

dated_readings as (

    select
        readings.site_id,
        readings.local_date,
        readings.local_hour,
        readings.glucose_mg_dl,
        readings.lbgi_risk,
        readings.hbgi_risk,
        dates.iso_day_of_week,
        dates.day_of_week_name
    from readings
    inner join dates
        on readings.local_date = dates.date_day

),

cell_sums as (

    select
        site_id,
        iso_day_of_week,
        day_of_week_name,
        local_hour,
        min(local_date) as first_local_date,
        max(local_date) as last_local_date,
        {{ cascade.glucose_sums('glucose_mg_dl') }}
    from dated_readings
    group by site_id, iso_day_of_week, day_of_week_name, local_hour

),

cell_metrics as (

    select
        *,
        {{ cascade.glucose_metrics_from_sums() }}
    from cell_sums

),

ranked as (

    select
        site_id,
        iso_day_of_week,
        local_hour,
        glucose_mg_dl,
        {{ cascade.percentile_ranks('glucose_mg_dl', 'site_id, iso_day_of_week, local_hour') }}
    from dated_readings

),

cell_medians as (

    select
        site_id,
        iso_day_of_week,
        local_hour,
        {{ cascade.percentile_cont('glucose_mg_dl', 0.5) }} as median_glucose_mg_dl
    from ranked
    group by site_id, iso_day_of_week, local_hour

),

final as (

    select
        cell_metrics.site_id,
        cell_metrics.iso_day_of_week,
        cell_metrics.day_of_week_name,
        cell_metrics.local_hour,
        cell_metrics.first_local_date,
        cell_metrics.last_local_date,
        cell_metrics.reading_count,
        cell_metrics.mean_glucose_mg_dl,
        cell_medians.median_glucose_mg_dl,
        cell_metrics.sd_glucose_mg_dl,
        cell_metrics.cv_pct,
        cell_metrics.tir_pct,
        cell_metrics.titr_pct,
        cell_metrics.tbr_pct,
        cell_metrics.tbr_level_2_pct,
        cell_metrics.tar_pct,
        cell_metrics.tar_level_2_pct
    from cell_metrics
    inner join cell_medians
        on cell_metrics.site_id = cell_medians.site_id
        and cell_metrics.iso_day_of_week = cell_medians.iso_day_of_week
        and cell_metrics.local_hour = cell_medians.local_hour

)

select * from final
