with

source as (

    select * from {{ source('raw', 'entries') }}

),

valid_entries as (

    select * from source
    where is_valid

),

renamed as (

    select
        {{ dbt.hash(dbt.concat(['site_id', "'|'", 'source_id'])) }} as entry_id,
        site_id,
        source_id,
        coalesce(
            lower(entry_type),
            case when sgv_mg_dl is not null then 'sgv' when mbg_mg_dl is not null then 'mbg' end
        ) as entry_type,
        event_at,
        coalesce(utc_offset_minutes, 0) as utc_offset_minutes,
        utc_offset_minutes is null as is_utc_offset_missing,
        sgv_mg_dl,
        mbg_mg_dl,
        direction,
        delta_mg_dl,
        noise as noise_level,
        device,
        srv_created_at,
        srv_modified_at,
        _cascade_ingested_at,
        _cascade_load_id

    from valid_entries

),

localised as (

    select
        *,
        {{ cascade.local_timestamp('event_at', 'utc_offset_minutes') }} as local_at
    from renamed

),

flagged as (

    select
        *,
        cast(local_at as date) as local_date,
        coalesce(entry_type = 'sgv' and sgv_mg_dl is not null, false) as is_sensor_reading,
        coalesce(entry_type = 'sgv' and sgv_mg_dl < 39, false) as is_sensor_error,
        coalesce(entry_type = 'sgv' and sgv_mg_dl = 39, false) as is_low_clamp,
        coalesce(entry_type = 'sgv' and sgv_mg_dl >= 401, false) as is_high_clamp
    from localised

),

-- The same reading sent by two uploaders (xDrip+ and a bridge, say) arrives with different ids
-- and devices: same site + type + instant + value (sgv for sensor entries, mbg for meter ones)
-- is one reading. Keep the smallest source_id.
duplicate_keys as (

    select
        *,
        case when entry_type = 'sgv' then null else mbg_mg_dl end as duplicate_mbg_mg_dl
    from flagged

),

ranked_duplicates as (

    select
        *,
        row_number() over (
            partition by site_id, entry_type, event_at, sgv_mg_dl, duplicate_mbg_mg_dl
            order by source_id
        ) as duplicate_rank,
        count(*) over (
            partition by site_id, entry_type, event_at, sgv_mg_dl, duplicate_mbg_mg_dl
        ) as uploader_copy_count
    from duplicate_keys

),

final as (

    select
        entry_id,
        site_id,
        source_id,
        entry_type,
        event_at,
        utc_offset_minutes,
        is_utc_offset_missing,
        local_at,
        local_date,
        sgv_mg_dl,
        mbg_mg_dl,
        is_sensor_reading,
        is_sensor_error,
        is_low_clamp,
        is_high_clamp,
        direction,
        delta_mg_dl,
        noise_level,
        device,
        uploader_copy_count,
        srv_created_at,
        srv_modified_at,
        _cascade_ingested_at,
        _cascade_load_id
    from ranked_duplicates
    where duplicate_rank = 1

)

select * from final
