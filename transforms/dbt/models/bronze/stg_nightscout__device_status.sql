with

source as (

    select * from {{ source('raw', 'devicestatus') }}

),

valid_statuses as (

    select * from source
    where is_valid

),

renamed as (

    select
        {{ dbt.hash(dbt.concat(['site_id', "'|'", 'source_id'])) }} as device_status_id,
        site_id,
        source_id,
        event_at,
        coalesce(utc_offset_minutes, 0) as utc_offset_minutes,
        utc_offset_minutes is null as is_utc_offset_missing,
        {{ cascade.local_timestamp('event_at', 'coalesce(utc_offset_minutes, 0)') }} as local_at,
        device,
        loop_system,
        iob_units,
        basal_iob_units,
        cob_grams,
        eventual_bg_mg_dl,
        predicted_mg_dl,
        predicted_start_at,
        enacted_rate_units_per_hour,
        enacted_duration_minutes,
        pump_reservoir_units,
        pump_battery_percent as pump_battery_pct,
        uploader_battery_percent as uploader_battery_pct,
        _cascade_ingested_at,
        _cascade_load_id

    from valid_statuses

),

final as (

    select
        *,
        cast(local_at as date) as local_date
    from renamed

)

select * from final
