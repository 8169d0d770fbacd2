-- Per subject and local day with readings: the five consensus bands (they add up to 100% of
-- the day's readings) plus time in tight range, wide, for a stacked bar per day.
with

daily as (

    select * from {{ ref('glucose_metrics_daily') }}
    where reading_count > 0

),

dates as (

    select * from {{ ref('dim_date') }}

),

final as (

    select
        daily.site_id,
        daily.local_date,
        dates.day_of_week_name,
        daily.reading_count,
        daily.cgm_active_pct,
        daily.tbr_level_2_pct,
        daily.tbr_level_1_pct,
        daily.tir_pct,
        daily.tar_level_1_pct,
        daily.tar_level_2_pct,
        daily.titr_pct
    from daily
    inner join dates
        on daily.local_date = dates.date_day

)

select * from final
