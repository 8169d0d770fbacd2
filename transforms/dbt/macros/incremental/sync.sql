{#
    Incremental models converge to exactly the full-refresh result, including after deletions
    (v3 tombstones, `is_valid = false`), edits that move a record to another day, and duplicates
    from a second uploader taking over. Each incremental row carries the version of what it was
    built from; a pre-hook deletes the rows whose version no longer exists upstream, and the model
    then inserts what upstream has and the target lacks (delete+insert on the grain key).

    - fct_glucose_readings: version = the raw row version (entry_id + its _cascade_ingested_at):
      a record ingested again (new, edited, deleted) has a new version, so only its reading is
      rebuilt, wherever it moved.
    - glucose_metrics_daily: version = (site, local day, number of records, newest
      _cascade_ingested_at, sensor interval): any raw change that touches a day's readings
      changes that day's version, so exactly the touched days are recomputed.
#}

{% macro reading_version_key(entry_id, ingested_at) -%}
    {{ dbt.concat([entry_id, "'@'", 'cast(' ~ cascade.epoch_ms(ingested_at) ~ ' as ' ~ dbt.type_string() ~ ')']) }}
{%- endmacro %}


{% macro day_version_key(site_id, local_date, record_count, ingested_at, interval_minutes) -%}
    {{ dbt.concat([
        site_id, "'|'",
        'cast(' ~ local_date ~ ' as ' ~ dbt.type_string() ~ ')', "'|'",
        'cast(' ~ record_count ~ ' as ' ~ dbt.type_string() ~ ')', "'|'",
        'cast(' ~ cascade.epoch_ms(ingested_at) ~ ' as ' ~ dbt.type_string() ~ ')', "'|'",
        'cast(' ~ interval_minutes ~ ' as ' ~ dbt.type_string() ~ ')'
    ]) }}
{%- endmacro %}


{# The current version of every (site, local day) that has readings. #}
{% macro glucose_day_versions() -%}
    select
        readings.site_id,
        readings.local_date,
        {{ cascade.day_version_key(
            'readings.site_id', 'readings.local_date', 'count(*)',
            'max(readings._cascade_ingested_at)', 'max(subjects.sensor_interval_minutes)'
        ) }} as day_version
    from {{ ref('fct_glucose_readings') }} as readings
    inner join {{ ref('dim_subject') }} as subjects
        on readings.site_id = subjects.site_id
    group by readings.site_id, readings.local_date
{%- endmacro %}


{# pre-hook of fct_glucose_readings: drop readings whose raw version is gone. #}
{% macro delete_superseded_readings() -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ cascade.reading_version_key('entry_id', '_cascade_ingested_at') }} not in (
        select {{ cascade.reading_version_key('entry_id', '_cascade_ingested_at') }}
        from {{ ref('stg_nightscout__entries') }}
        where is_sensor_reading
    )
    {%- endif -%}
{%- endmacro %}


{# pre-hook of glucose_metrics_daily: drop days whose version changed or that have no readings now. #}
{% macro delete_superseded_days() -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ cascade.day_version_key(
        'site_id', 'local_date', 'reading_count + sensor_error_count',
        '_cascade_ingested_at', 'sensor_interval_minutes'
    ) }} not in (
        select day_version from ({{ cascade.glucose_day_versions() }}) as current_days
    )
    {%- endif -%}
{%- endmacro %}


{#
    14-day window models (glucose_metrics_14d, agp_percentiles): version of a window = the sum of
    the hashes of its days' tokens, each token being the day's version in glucose_metrics_daily
    (or "no readings" for a day of the subject's span without any) and the subject's sensor
    interval. Any change to any of the 14 days (readings, span, interval) changes the version, so
    exactly the windows holding a touched day are recomputed. Rows carry it as
    `_cascade_window_version`.
#}
{% macro glucose_window_versions() -%}
    {%- set window_days = var('metrics_window_days') -%}
    select
        spine.site_id,
        spine.local_date as window_end_date,
        cast(sum({{ cascade.hash_number(dbt.concat([
            'coalesce(' ~ cascade.day_version_key(
                'daily.site_id', 'daily.local_date', 'daily.reading_count + daily.sensor_error_count',
                'daily._cascade_ingested_at', 'daily.sensor_interval_minutes'
            ) ~ ', ' ~ dbt.concat(['spine.site_id', "'|'", 'cast(spine.local_date as ' ~ dbt.type_string() ~ ')', "'|none'"]) ~ ')',
            "'|'", 'cast(spine.sensor_interval_minutes as ' ~ dbt.type_string() ~ ')'
        ])) }}) over (
            partition by spine.site_id order by spine.local_date
            rows between {{ window_days - 1 }} preceding and current row
        ) as decimal(38, 0)) as window_version
    from {{ ref('int_subject_days') }} as spine
    left join {{ ref('glucose_metrics_daily') }} as daily
        on spine.site_id = daily.site_id
        and spine.local_date = daily.local_date
{%- endmacro %}


{% macro window_version_key(site_id, window_end_date, version) -%}
    {{ dbt.concat([
        site_id, "'|'",
        'cast(' ~ window_end_date ~ ' as ' ~ dbt.type_string() ~ ')', "'|'",
        'cast(' ~ version ~ ' as ' ~ dbt.type_string() ~ ')'
    ]) }}
{%- endmacro %}


{# The windows an incremental window model lacks at its current version (all of them on a full build). #}
{% macro glucose_windows_to_build() -%}
    select site_id, window_end_date, window_version
    from ({{ cascade.glucose_window_versions() }}) as current_windows
    {% if is_incremental() %}
    where {{ cascade.window_version_key('site_id', 'window_end_date', 'window_version') }} not in (
        select {{ cascade.window_version_key('site_id', 'window_end_date', '_cascade_window_version') }}
        from {{ this }}
    )
    {% endif %}
{%- endmacro %}


{# pre-hook of the window models: drop windows whose version changed or that left the span. #}
{% macro delete_superseded_windows() -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where {{ cascade.window_version_key('site_id', 'window_end_date', '_cascade_window_version') }} not in (
        select {{ cascade.window_version_key('site_id', 'window_end_date', 'window_version') }}
        from ({{ cascade.glucose_window_versions() }}) as current_windows
    )
    {%- endif -%}
{%- endmacro %}

