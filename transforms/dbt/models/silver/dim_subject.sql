with

entries as (

    select * from {{ ref('stg_nightscout__entries') }}

),

treatments as (

    select * from {{ ref('stg_nightscout__treatments') }}

),

device_statuses as (

    select * from {{ ref('stg_nightscout__device_status') }}

),

profiles as (

    select * from {{ ref('stg_nightscout__profiles') }}

),

readings as (

    select * from {{ ref('fct_glucose_readings') }}
    where not is_sensor_error

),

sites as (

    select site_id from entries
    union
    select site_id from treatments
    union
    select site_id from device_statuses
    union
    select site_id from profiles

),

reading_span as (

    select
        site_id,
        min(event_at) as first_reading_at,
        max(event_at) as last_reading_at,
        min(local_date) as first_local_date,
        max(local_date) as last_local_date,
        count(*) as reading_count
    from readings
    group by site_id

),

-- Sensor interval: the median gap between consecutive readings (0-gaps from two uploaders
-- disagreeing on a value are not gaps). Below 3 minutes it is a 1-minute sensor, else 5.
reading_gaps as (

    select
        site_id,
        {{ cascade.epoch_ms('event_at') }}
            - lag({{ cascade.epoch_ms('event_at') }}) over (
                partition by site_id order by event_at, glucose_mg_dl
            ) as gap_ms
    from readings

),

ranked_gaps as (

    select
        site_id,
        gap_ms,
        {{ cascade.percentile_ranks('gap_ms', 'site_id') }}
    from reading_gaps
    where gap_ms > 0

),

median_gaps as (

    select
        site_id,
        {{ cascade.percentile_cont('gap_ms', 0.5) }} as median_gap_ms
    from ranked_gaps
    group by site_id

),

latest_profiles as (

    select
        site_id,
        timezone,
        glucose_units,
        row_number() over (partition by site_id order by started_at desc, profile_id desc) as recency_rank
    from profiles
    where timezone is not null

),

final as (

    select
        sites.site_id,
        reading_span.first_reading_at,
        reading_span.last_reading_at,
        reading_span.first_local_date,
        reading_span.last_local_date,
        coalesce(reading_span.reading_count, 0) as reading_count,
        cast(median_gaps.median_gap_ms / 1000.0 as {{ cascade.type_double() }}) as median_reading_gap_seconds,
        cast(
            case
                when median_gaps.median_gap_ms is null then 5
                when median_gaps.median_gap_ms < 180000 then 1
                else 5
            end as {{ dbt.type_int() }}
        ) as sensor_interval_minutes,
        latest_profiles.timezone,
        latest_profiles.glucose_units as profile_glucose_units
    from sites
    left join reading_span
        on sites.site_id = reading_span.site_id
    left join median_gaps
        on sites.site_id = median_gaps.site_id
    left join latest_profiles
        on sites.site_id = latest_profiles.site_id
        and latest_profiles.recency_rank = 1

)

select * from final
