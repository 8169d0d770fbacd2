with

source as (

    select * from {{ source('raw', 'profile') }}

),

valid_profiles as (

    select * from source
    where is_valid

),

renamed as (

    select
        {{ dbt.hash(dbt.concat(['site_id', "'|'", 'source_id'])) }} as profile_id,
        site_id,
        source_id,
        event_at as started_at,
        default_profile as default_profile_name,
        case
            when lower(units) like 'mmol%' then 'mmol/L'
            when lower(units) like 'mg%' then 'mg/dL'
        end as glucose_units,
        timezone,
        dia_hours,
        store as profile_store_json,
        device,
        _cascade_ingested_at,
        _cascade_load_id

    from valid_profiles

),

final as (

    select * from renamed

)

select * from final
