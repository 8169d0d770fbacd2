-- The AGP curve of each subject's latest 14-day window: one row per time-of-day bin with the
-- 5/25/50/75/95th percentiles and the target range (70-180 mg/dL) to shade.
with

subjects as (

    select * from {{ ref('dim_subject') }}

),

profiles as (

    select * from {{ ref('agp_percentiles') }}

),

final as (

    select
        profiles.site_id,
        profiles.window_start_date,
        profiles.window_end_date,
        profiles.time_bin,
        profiles.bin_start_minute_of_day,
        profiles.bin_label,
        profiles.reading_count,
        profiles.p05_glucose_mg_dl,
        profiles.p25_glucose_mg_dl,
        profiles.p50_glucose_mg_dl,
        profiles.p75_glucose_mg_dl,
        profiles.p95_glucose_mg_dl,
        70 as target_low_mg_dl,
        180 as target_high_mg_dl
    from profiles
    inner join subjects
        on profiles.site_id = subjects.site_id
        and profiles.window_end_date = subjects.last_local_date

)

select * from final
