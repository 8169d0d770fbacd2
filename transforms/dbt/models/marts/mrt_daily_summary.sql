-- Per subject and local day of its span (days without readings included, at 0% CGM active):
-- daily glucose metrics, glycaemic event counts (by the local day an event started) and
-- treatment totals. Insulin is bolus insulin only (temp basals are counted, not integrated).
with

subject_days as (

    select * from {{ ref('int_subject_days') }}

),

dates as (

    select * from {{ ref('dim_date') }}

),

daily as (

    select * from {{ ref('glucose_metrics_daily') }}

),

events as (

    select * from {{ ref('glycemic_events') }}

),

treatments as (

    select * from {{ ref('fct_treatments') }}

),

day_events as (

    select
        site_id,
        local_date,
        {{ cascade.count_where("event_type = 'hypo_level_1'") }} as hypo_level_1_event_count,
        {{ cascade.count_where("event_type = 'hypo_level_2'") }} as hypo_level_2_event_count,
        {{ cascade.count_where("event_type = 'hypo_extended'") }} as hypo_extended_event_count,
        {{ cascade.count_where("event_type = 'hyper'") }} as hyper_event_count,
        {{ cascade.exact_sum("case when event_type = 'hypo_level_1' then duration_minutes else 0 end", 4) }} as hypo_level_1_event_minutes,
        {{ cascade.exact_sum("case when event_type = 'hyper' then duration_minutes else 0 end", 4) }} as hyper_event_minutes
    from events
    group by site_id, local_date

),

day_treatments as (

    select
        site_id,
        local_date,
        {{ cascade.count_where('is_bolus') }} as bolus_count,
        {{ cascade.count_where('is_smb') }} as smb_count,
        {{ cascade.exact_sum('bolus_insulin_units', 4) }} as bolus_insulin_units,
        {{ cascade.count_where('has_carbs') }} as carb_entry_count,
        {{ cascade.exact_sum('carbs_grams', 4) }} as carbs_grams,
        {{ cascade.count_where('is_temp_basal') }} as temp_basal_count
    from treatments
    group by site_id, local_date

),

final as (

    select
        subject_days.site_id,
        subject_days.local_date,
        dates.day_of_week_name,
        dates.is_weekend,
        coalesce(daily.reading_count, 0) as reading_count,
        coalesce(daily.expected_reading_count, cast(1440 / subject_days.sensor_interval_minutes as {{ dbt.type_int() }})) as expected_reading_count,
        coalesce(daily.cgm_active_pct, 0.0) as cgm_active_pct,
        coalesce(daily.has_sufficient_data, false) as has_sufficient_data,
        coalesce(daily.sensor_error_count, 0) as sensor_error_count,
        daily.mean_glucose_mg_dl,
        daily.sd_glucose_mg_dl,
        daily.cv_pct,
        daily.gmi_pct,
        daily.tir_pct,
        daily.titr_pct,
        daily.tbr_level_1_pct,
        daily.tbr_level_2_pct,
        daily.tar_level_1_pct,
        daily.tar_level_2_pct,
        daily.gri,
        daily.gri_zone,
        daily.lbgi,
        daily.hbgi,
        daily.min_glucose_mg_dl,
        daily.max_glucose_mg_dl,
        coalesce(day_events.hypo_level_1_event_count, 0) as hypo_level_1_event_count,
        coalesce(day_events.hypo_level_2_event_count, 0) as hypo_level_2_event_count,
        coalesce(day_events.hypo_extended_event_count, 0) as hypo_extended_event_count,
        coalesce(day_events.hyper_event_count, 0) as hyper_event_count,
        coalesce(day_events.hypo_level_1_event_minutes, 0.0) as hypo_level_1_event_minutes,
        coalesce(day_events.hyper_event_minutes, 0.0) as hyper_event_minutes,
        coalesce(day_treatments.bolus_count, 0) as bolus_count,
        coalesce(day_treatments.smb_count, 0) as smb_count,
        coalesce(day_treatments.bolus_insulin_units, 0.0) as bolus_insulin_units,
        coalesce(day_treatments.carb_entry_count, 0) as carb_entry_count,
        coalesce(day_treatments.carbs_grams, 0.0) as carbs_grams,
        coalesce(day_treatments.temp_basal_count, 0) as temp_basal_count
    from subject_days
    inner join dates
        on subject_days.local_date = dates.date_day
    left join daily
        on subject_days.site_id = daily.site_id
        and subject_days.local_date = daily.local_date
    left join day_events
        on subject_days.site_id = day_events.site_id
        and subject_days.local_date = day_events.local_date
    left join day_treatments
        on subject_days.site_id = day_treatments.site_id
        and subject_days.local_date = day_treatments.local_date

)

select * from final
