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
