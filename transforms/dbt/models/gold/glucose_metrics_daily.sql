{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['site_id', 'local_date'],
        on_schema_change='fail',
        pre_hook="{{ cascade.delete_superseded_days() }}"
    )
}}

with

readings as (

    select * from {{ ref('fct_glucose_readings') }}

),

subjects as (

    select * from {{ ref('dim_subject') }}

),

day_versions as (

    {{ cascade.glucose_day_versions() }}

),

{% if is_incremental() %}
loaded_days as (

    select
        {{ cascade.day_version_key(
            'site_id', 'local_date', 'reading_count + sensor_error_count',
            '_cascade_ingested_at', 'sensor_interval_minutes'
        ) }} as day_version
    from {{ this }}

),
{% endif %}

-- The days to (re)compute: all of them on a full build; otherwise the days whose version
-- (records, newest ingestion, sensor interval) the target does not hold.
days_to_build as (

    select site_id, local_date
    from day_versions
    {% if is_incremental() %}
    where day_version not in (select day_version from loaded_days)
    {% endif %}

),

day_readings as (

    select readings.*
    from readings
    inner join days_to_build
        on readings.site_id = days_to_build.site_id
        and readings.local_date = days_to_build.local_date

),

day_sums as (

    select
        site_id,
        local_date,
        {{ cascade.glucose_sums('glucose_mg_dl') }},
        {{ cascade.count_where('is_sensor_error') }} as sensor_error_count,
        {{ cascade.count_where('is_low_clamp') }} as low_clamp_count,
        {{ cascade.count_where('is_high_clamp') }} as high_clamp_count,
        min(glucose_mg_dl) as min_glucose_mg_dl,
        max(glucose_mg_dl) as max_glucose_mg_dl,
        min(event_at) as first_reading_at,
        max(event_at) as last_reading_at,
        max(_cascade_ingested_at) as _cascade_ingested_at
    from day_readings
    group by site_id, local_date

),

with_expected as (

    select
        day_sums.*,
        subjects.sensor_interval_minutes,
        cast(1440 / subjects.sensor_interval_minutes as {{ dbt.type_int() }}) as expected_reading_count
    from day_sums
    inner join subjects
        on day_sums.site_id = subjects.site_id

),

final as (

    select
        site_id,
        local_date,
        sensor_interval_minutes,
        expected_reading_count,
        reading_count,
        sensor_error_count,
        low_clamp_count,
        high_clamp_count,
        {{ cascade.cgm_activity() }},
        {{ cascade.glucose_metrics_from_sums() }},
        min_glucose_mg_dl,
        max_glucose_mg_dl,
        first_reading_at,
        last_reading_at,
        glucose_sum_mg_dl,
        glucose_sum_of_squares,
        readings_below_54_count,
        readings_54_69_count,
        readings_70_180_count,
        readings_70_140_count,
        readings_181_250_count,
        readings_above_250_count,
        lbgi_risk_sum,
        hbgi_risk_sum,
        _cascade_ingested_at
    from with_expected

)

select * from final
