{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_id',
        on_schema_change='fail',
        pre_hook="{{ cascade.delete_recomputed_events() }}",
        post_hook="{{ cascade.save_event_day_versions() }}"
    )
}}
{%- set by_kind = 'partition by site_id, event_type order by event_at, glucose_mg_dl' -%}
{%- set cumulative = 'rows between unbounded preceding and current row' -%}

-- Glycaemic events (consensus definitions, Battelino et al. 2019; docs/TRANSFORM.md, Metrics):
--   hypo_level_1  : >= 15 consecutive minutes < 70 mg/dL
--   hypo_level_2  : >= 15 consecutive minutes < 54 mg/dL
--   hypo_extended : >  120 consecutive minutes < 70 mg/dL
--   hyper         : >= 15 consecutive minutes > 250 mg/dL
-- An event ends after >= 15 consecutive minutes back at/above (hypo) or at/below (hyper) the
-- threshold; shorter returns belong to the event. A gap longer than 3 sensor intervals is
-- never bridged: it ends any run and any event (such an event has is_recovered = false).
-- Each reading stands for one sensor interval, so k consecutive readings last k * interval minutes.
-- Incremental: per subject with a touched day, events are recomputed from a safe cut before it
-- (macros/incremental/events.sql); the pre-hook deleted the events from that cut on.
with

{% if is_incremental() %}
recompute as (

    {{ cascade.event_recompute_from() }}

),
{% endif %}

readings as (

    select readings.*
    from {{ ref('fct_glucose_readings') }} as readings
    {% if is_incremental() %}
    inner join recompute
        on readings.site_id = recompute.site_id
        and (
            recompute.recompute_from_ms is null
            or {{ cascade.epoch_ms('readings.event_at') }} >= recompute.recompute_from_ms
        )
    {% endif %}
    where not readings.is_sensor_error

),

subjects as (

    select * from {{ ref('dim_subject') }}

),

event_definitions as (

    select 'hypo_level_1' as event_type, 70 as threshold_mg_dl, true as is_below, 15 as start_minutes, false as is_start_strict
    union all
    select 'hypo_level_2' as event_type, 54 as threshold_mg_dl, true as is_below, 15 as start_minutes, false as is_start_strict
    union all
    select 'hypo_extended' as event_type, 70 as threshold_mg_dl, true as is_below, 120 as start_minutes, true as is_start_strict
    union all
    select 'hyper' as event_type, 250 as threshold_mg_dl, false as is_below, 15 as start_minutes, false as is_start_strict

),

classified_readings as (

    select
        readings.site_id,
        event_definitions.event_type,
        event_definitions.threshold_mg_dl,
        event_definitions.is_below,
        event_definitions.start_minutes,
        event_definitions.is_start_strict,
        subjects.sensor_interval_minutes,
        readings.event_at,
        readings.local_at,
        readings.glucose_mg_dl,
        {{ cascade.epoch_ms('readings.event_at') }} as event_ms,
        case
            when event_definitions.is_below then readings.glucose_mg_dl < event_definitions.threshold_mg_dl
            else readings.glucose_mg_dl > event_definitions.threshold_mg_dl
        end as is_excursion
    from readings
    inner join subjects
        on readings.site_id = subjects.site_id
    cross join event_definitions

),

with_previous as (

    select
        *,
        lag(event_ms) over ({{ by_kind }}) as previous_ms,
        lag(is_excursion) over ({{ by_kind }}) as previous_is_excursion
    from classified_readings

),

boundaries as (

    select
        *,
        case
            when previous_ms is null then 1
            when event_ms - previous_ms > {{ var('max_bridged_intervals') }} * sensor_interval_minutes * 60000 then 1
            else 0
        end as is_segment_start
    from with_previous

),

numbered as (

    select
        *,
        sum(is_segment_start) over ({{ by_kind }} {{ cumulative }}) as segment_number,
        sum(
            case when is_segment_start = 1 or is_excursion <> previous_is_excursion then 1 else 0 end
        ) over ({{ by_kind }} {{ cumulative }}) as run_number
    from boundaries

),

with_run_start as (

    select
        *,
        first_value(local_at) over (
            partition by site_id, event_type, run_number order by event_at, glucose_mg_dl
        ) as run_first_local_at
    from numbered

),

-- Runs: maximal stretches of readings on the same side of the threshold without a long gap.
runs as (

    select
        site_id,
        event_type,
        threshold_mg_dl,
        is_below,
        start_minutes,
        is_start_strict,
        sensor_interval_minutes,
        segment_number,
        run_number,
        is_excursion,
        min(event_at) as first_at,
        max(event_at) as last_at,
        min(event_ms) as first_ms,
        max(event_ms) as last_ms,
        count(*) as reading_count,
        min(glucose_mg_dl) as min_glucose_mg_dl,
        max(glucose_mg_dl) as max_glucose_mg_dl,
        min(run_first_local_at) as first_local_at,
        cast(max(event_ms) - min(event_ms) as {{ cascade.type_double() }}) / 60000.0
            + sensor_interval_minutes as duration_minutes
    from with_run_start
    group by
        site_id, event_type, threshold_mg_dl, is_below, start_minutes, is_start_strict,
        sensor_interval_minutes, segment_number, run_number, is_excursion

),

flagged_runs as (

    select
        *,
        is_excursion and (
            (is_start_strict and duration_minutes > start_minutes)
            or (not is_start_strict and duration_minutes >= start_minutes)
        ) as starts_event,
        not is_excursion and duration_minutes >= 15 as is_recovery
    from runs

),

-- Episodes: the runs between two recoveries (or segment edges). An event starts at the first
-- run of an episode that is long enough and takes in every later excursion of the episode.
episodes as (

    select
        *,
        sum(case when is_recovery then 1 else 0 end) over (
            partition by site_id, event_type, segment_number order by run_number {{ cumulative }}
        ) as episode_number
    from flagged_runs

),

episode_bounds as (

    select
        *,
        min(case when starts_event then first_ms end) over (
            partition by site_id, event_type, segment_number, episode_number
        ) as event_start_ms,
        max(episode_number) over (
            partition by site_id, event_type, segment_number
        ) as last_episode_number
    from episodes

),

event_runs as (

    select
        *,
        max(case when is_excursion then last_ms end) over (
            partition by site_id, event_type, segment_number, episode_number
        ) as event_last_ms
    from episode_bounds
    where event_start_ms is not null
        and first_ms >= event_start_ms

),

events as (

    select
        site_id,
        event_type,
        threshold_mg_dl,
        is_below,
        sensor_interval_minutes,
        min(first_at) as started_at,
        min(first_ms) as started_ms,
        min(case when first_ms = event_start_ms then first_local_at end) as local_started_at,
        max(case when is_excursion then last_at end) as last_excursion_at,
        max(case when is_excursion then last_ms end) as last_excursion_ms,
        cast(sum(reading_count) as {{ dbt.type_bigint() }}) as reading_count,
        cast(sum(case when is_excursion then reading_count else 0 end) as {{ dbt.type_bigint() }}) as excursion_reading_count,
        min(case when is_excursion then min_glucose_mg_dl end) as min_glucose_mg_dl,
        max(case when is_excursion then max_glucose_mg_dl end) as max_glucose_mg_dl,
        max(case when episode_number < last_episode_number then 1 else 0 end) = 1 as is_recovered
    from event_runs
    where first_ms <= event_last_ms
    group by
        site_id, event_type, threshold_mg_dl, is_below, sensor_interval_minutes,
        segment_number, episode_number

),

final as (

    select
        {{ dbt.hash(dbt.concat([
            'site_id', "'|'", 'event_type', "'|'",
            'cast(started_ms as ' ~ dbt.type_string() ~ ')'
        ])) }} as event_id,
        site_id,
        event_type,
        threshold_mg_dl,
        started_at,
        {{ dbt.dateadd('minute', 'sensor_interval_minutes', 'last_excursion_at') }} as ended_at,
        cast(last_excursion_ms - started_ms as {{ cascade.type_double() }}) / 60000.0
            + sensor_interval_minutes as duration_minutes,
        local_started_at,
        cast(local_started_at as date) as local_date,
        reading_count,
        excursion_reading_count,
        case when is_below then min_glucose_mg_dl else max_glucose_mg_dl end as extreme_glucose_mg_dl,
        is_recovered
    from events

)

select * from final
