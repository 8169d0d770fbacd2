with

treatments as (

    select * from {{ ref('stg_nightscout__treatments') }}

),

split_out as (

    select
        treatment_id,
        site_id,
        source_id,
        event_type,
        event_at,
        utc_offset_minutes,
        is_utc_offset_missing,
        local_at,
        local_date,
        coalesce(insulin_units > 0, false) as is_bolus,
        is_smb,
        case when insulin_units > 0 then insulin_units end as bolus_insulin_units,
        coalesce(carbs_grams > 0, false) as has_carbs,
        case when carbs_grams > 0 then carbs_grams end as carbs_grams,
        coalesce(lower(event_type) = 'temp basal', false) as is_temp_basal,
        case
            when lower(event_type) = 'temp basal' then coalesce(absolute_units_per_hour, rate_units_per_hour)
        end as temp_basal_rate_units_per_hour,
        case when lower(event_type) = 'temp basal' then temp_basal_percent end as temp_basal_percent,
        duration_minutes,
        case
            when glucose_value is null then null
            when lower(glucose_units) like 'mmol%' then glucose_value * {{ var('mg_dl_per_mmol_l') }}
            else glucose_value
        end as glucose_check_mg_dl,
        target_top_value,
        target_bottom_value,
        profile_name,
        entered_by,
        notes,
        device,
        _cascade_ingested_at
    from treatments

),

final as (

    select * from split_out

)

select * from final
