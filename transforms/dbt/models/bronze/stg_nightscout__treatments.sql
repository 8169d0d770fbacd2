with

source as (

    select * from {{ source('raw', 'treatments') }}

),

valid_treatments as (

    select * from source
    where is_valid

),

renamed as (

    select
        {{ dbt.hash(dbt.concat(['site_id', "'|'", 'source_id'])) }} as treatment_id,
        site_id,
        source_id,
        event_type,
        event_at,
        coalesce(utc_offset_minutes, 0) as utc_offset_minutes,
        utc_offset_minutes is null as is_utc_offset_missing,
        {{ cascade.local_timestamp('event_at', 'coalesce(utc_offset_minutes, 0)') }} as local_at,
        insulin_units,
        carbs_grams,
        rate_units_per_hour,
        absolute_units_per_hour,
        percent as temp_basal_percent,
        duration_minutes,
        glucose as glucose_value,
        glucose_units,
        target_top as target_top_value,
        target_bottom as target_bottom_value,
        coalesce(is_smb, false) as is_smb,
        profile_name,
        entered_by,
        notes,
        device,
        _cascade_ingested_at,
        _cascade_load_id

    from valid_treatments

),

-- Two uploaders (or a caregiver re-entering) send the same treatment with different ids.
ranked_duplicates as (

    select
        *,
        row_number() over (
            partition by
                site_id, event_type, event_at, insulin_units, carbs_grams,
                rate_units_per_hour, absolute_units_per_hour, duration_minutes
            order by source_id
        ) as duplicate_rank
    from renamed

),

final as (

    select
        treatment_id,
        site_id,
        source_id,
        event_type,
        event_at,
        utc_offset_minutes,
        is_utc_offset_missing,
        local_at,
        cast(local_at as date) as local_date,
        insulin_units,
        carbs_grams,
        rate_units_per_hour,
        absolute_units_per_hour,
        temp_basal_percent,
        duration_minutes,
        glucose_value,
        glucose_units,
        target_top_value,
        target_bottom_value,
        is_smb,
        profile_name,
        entered_by,
        notes,
        device,
        _cascade_ingested_at,
        _cascade_load_id
    from ranked_duplicates
    where duplicate_rank = 1

)

select * from final
