with

statuses as (

    select * from {{ ref('stg_nightscout__device_status') }}

),

final as (

    select
        device_status_id,
        site_id,
        source_id,
        event_at,
        utc_offset_minutes,
        local_at,
        local_date,
        device,
        loop_system,
        iob_units,
        basal_iob_units,
        cob_grams,
        eventual_bg_mg_dl,
        predicted_mg_dl,
        predicted_start_at,
        enacted_rate_units_per_hour as enacted_temp_basal_rate_units_per_hour,
        enacted_duration_minutes as enacted_temp_basal_duration_minutes,
        pump_reservoir_units,
        pump_battery_pct,
        uploader_battery_pct,
        _cascade_ingested_at
    from statuses

)

select * from final
