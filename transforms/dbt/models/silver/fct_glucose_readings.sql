{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='reading_id',
        on_schema_change='fail',
        pre_hook="{{ cascade.delete_superseded_readings() }}"
    )
}}

with

entries as (

    select * from {{ ref('stg_nightscout__entries') }}
    where is_sensor_reading

),

{% if is_incremental() %}
-- Readings whose raw version the target does not hold yet: new, edited, or taking over from
-- a deleted duplicate. Superseded versions were deleted by the pre-hook.
loaded_versions as (

    select {{ cascade.reading_version_key('entry_id', '_cascade_ingested_at') }} as reading_version
    from {{ this }}

),
{% endif %}

new_entries as (

    select * from entries
    {% if is_incremental() %}
    where {{ cascade.reading_version_key('entry_id', '_cascade_ingested_at') }} not in (
        select reading_version from loaded_versions
    )
    {% endif %}

),

readings as (

    select
        {{ dbt.hash(dbt.concat([
            'site_id', "'|sgv|'",
            'cast(' ~ cascade.epoch_ms('event_at') ~ ' as ' ~ dbt.type_string() ~ ')', "'|'",
            'cast(sgv_mg_dl as ' ~ dbt.type_string() ~ ')'
        ])) }} as reading_id,
        entry_id,
        site_id,
        source_id,
        device,
        event_at,
        utc_offset_minutes,
        is_utc_offset_missing,
        local_at,
        local_date,
        cast(extract(hour from local_at) as {{ dbt.type_int() }}) as local_hour,
        cast(extract(hour from local_at) * 60 + extract(minute from local_at) as {{ dbt.type_int() }}) as local_minute_of_day,
        case when not is_sensor_error then sgv_mg_dl end as glucose_mg_dl,
        case when is_sensor_error then sgv_mg_dl end as sensor_error_code,
        is_sensor_error,
        is_low_clamp,
        is_high_clamp,
        direction,
        delta_mg_dl,
        noise_level,
        uploader_copy_count,
        _cascade_ingested_at
    from new_entries

),

final as (

    select
        reading_id,
        entry_id,
        site_id,
        source_id,
        device,
        event_at,
        utc_offset_minutes,
        is_utc_offset_missing,
        local_at,
        local_date,
        local_hour,
        local_minute_of_day,
        glucose_mg_dl,
        {{ cascade.metric_round(cascade.mg_dl_to_mmol_l('glucose_mg_dl')) }} as glucose_mmol_l,
        sensor_error_code,
        is_sensor_error,
        is_low_clamp,
        is_high_clamp,
        direction,
        delta_mg_dl,
        noise_level,
        uploader_copy_count,
        {{ cascade.metric_round(cascade.bg_low_risk('glucose_mg_dl'), 6) }} as lbgi_risk,
        {{ cascade.metric_round(cascade.bg_high_risk('glucose_mg_dl'), 6) }} as hbgi_risk,
        _cascade_ingested_at
    from readings

)

select * from final
