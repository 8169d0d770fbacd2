{#
    glycemic_events, incremental. Events can span midnight (and in principle days), so it is not
    enough to recompute the touched days: per subject with a touched day, events are recomputed
    from a *safe cut* before the first touched day up to the end of the history.

    - Touched days: the days whose version (see sync.sql) differs from the versions the model was
      last built from. Those are kept in a state table beside the model (`<model>__day_versions`,
      replaced by a post-hook after every build of the model, so a failed run recomputes again).
    - Safe cut: the latest reading r0 before `bound` (00:00 UTC two days before the first touched
      local date: no reading of a touched day can be earlier, whatever its UTC offset) that either
      follows a gap longer than the bridged gap (a segment start: events never cross it), or starts
      at least 15 minutes of consecutive readings within 70-250 mg/dL (a recovery for every event
      type: every event before it ended, every later event starts after it). Cuts are looked for in
      the two days before `bound`; with none there, the subject's whole history is recomputed.
    Recomputing from r0 as if the data began there gives exactly the full computation's events
    from r0 on, and every event starting before r0 is unchanged (its readings are all before
    `bound`), so the incremental table equals the full refresh.
#}

{% macro event_day_state() -%}
    _cascade.{{ this.identifier }}__day_versions
{%- endmacro %}


{% macro create_event_day_state() -%}
    create schema if not exists _cascade;
    create table if not exists {{ cascade.event_day_state() }} (
        site_id {{ dbt.type_string() }}, local_date date, day_version {{ dbt.type_string() }}
    )
{%- endmacro %}


{% macro event_recompute_from() -%}
    {%- set day_ms = 86400000 -%}
    {%- set lookback_days = 2 -%}
    {%- set gap_ms = var('max_bridged_intervals') ~ ' * subjects.sensor_interval_minutes * 60000' -%}
    with

    current_days as (

        {{ cascade.glucose_day_versions() }}

    ),

    loaded_days as (

        select * from {{ cascade.event_day_state() }}

    ),

    touched_days as (

        select
            coalesce(current_days.site_id, loaded_days.site_id) as site_id,
            coalesce(current_days.local_date, loaded_days.local_date) as local_date
        from current_days
        full outer join loaded_days
            on current_days.site_id = loaded_days.site_id
            and current_days.local_date = loaded_days.local_date
        where current_days.day_version is null
            or loaded_days.day_version is null
            or current_days.day_version <> loaded_days.day_version

    ),

    bounds as (

        select
            site_id,
            ({{ dbt.datediff("cast('1970-01-01' as date)", 'min(local_date)', 'day') }} - {{ lookback_days }})
                * cast({{ day_ms }} as {{ dbt.type_bigint() }}) as bound_ms
        from touched_days
        group by site_id

    ),

    lookback as (

        select
            readings.site_id,
            subjects.sensor_interval_minutes,
            {{ cascade.epoch_ms('readings.event_at') }} as event_ms,
            readings.event_at,
            readings.glucose_mg_dl,
            readings.glucose_mg_dl between 70 and 250 as is_safe
        from {{ ref('fct_glucose_readings') }} as readings
        inner join bounds
            on readings.site_id = bounds.site_id
        inner join {{ ref('dim_subject') }} as subjects
            on readings.site_id = subjects.site_id
        where not readings.is_sensor_error
            and {{ cascade.epoch_ms('readings.event_at') }} < bounds.bound_ms
            and {{ cascade.epoch_ms('readings.event_at') }} >= bounds.bound_ms - {{ lookback_days * day_ms }}

    ),

    with_previous as (

        select
            *,
            lag(event_ms) over (partition by site_id order by event_at, glucose_mg_dl) as previous_ms,
            lag(is_safe) over (partition by site_id order by event_at, glucose_mg_dl) as previous_is_safe
        from lookback

    ),

    flagged as (

        select
            *,
            previous_ms is not null and event_ms - previous_ms > {{ var('max_bridged_intervals') }} * sensor_interval_minutes * 60000 as is_gap_start,
            case
                when previous_ms is null then 1
                when event_ms - previous_ms > {{ var('max_bridged_intervals') }} * sensor_interval_minutes * 60000 then 1
                when is_safe <> previous_is_safe then 1
                else 0
            end as is_run_start
        from with_previous

    ),

    numbered as (

        select
            *,
            sum(is_run_start) over (
                partition by site_id order by event_at, glucose_mg_dl
                rows between unbounded preceding and current row
            ) as run_number
        from flagged

    ),

    runs as (

        select
            site_id,
            run_number,
            min(event_ms) as first_ms,
            max(case when is_gap_start then event_ms end) as gap_start_ms,
            bool_and(is_safe) as is_safe,
            cast(max(event_ms) - min(event_ms) as {{ cascade.type_double() }}) / 60000.0
                + max(sensor_interval_minutes) as duration_minutes
        from numbered
        group by site_id, run_number

    ),

    cuts as (

        select
            site_id,
            max(case when is_safe and duration_minutes >= 15 then first_ms else gap_start_ms end) as cut_ms
        from runs
        group by site_id

    )

    select
        bounds.site_id,
        cuts.cut_ms as recompute_from_ms
    from bounds
    left join cuts
        on bounds.site_id = cuts.site_id
{%- endmacro %}


{# pre-hook: drop the events from each touched subject's safe cut on. #}
{% macro delete_recomputed_events() -%}
    {%- if is_incremental() -%}
    {{ cascade.create_event_day_state() }};
    delete from {{ this }}
    where exists (
        select 1
        from ({{ cascade.event_recompute_from() }}) as recompute
        where recompute.site_id = {{ this.identifier }}.site_id
            and (
                recompute.recompute_from_ms is null
                or {{ cascade.epoch_ms(this.identifier ~ '.started_at') }} >= recompute.recompute_from_ms
            )
    )
    {%- endif -%}
{%- endmacro %}


{# post-hook: the day versions the model now reflects. #}
{% macro save_event_day_versions() -%}
    {{ cascade.create_event_day_state() }};
    delete from {{ cascade.event_day_state() }};
    insert into {{ cascade.event_day_state() }} (site_id, local_date, day_version)
    select site_id, local_date, day_version from ({{ cascade.glucose_day_versions() }}) as current_days
{%- endmacro %}
