-- One row per subject: the latest window (var metrics_window_days, ending on the subject's last
-- local date with readings), its headline metrics and whether each international-consensus target
-- for most adults with T1D/T2D (Battelino et al. 2019) is met: TIR, TBR (<70), TBR level 2 (<54),
-- TAR (>180), TAR level 2 (>250), CV, held to the var consensus_targets (macros/metrics/targets.sql).
-- Percentages are of readings.
with

subjects as (

    select * from {{ ref('dim_subject') }}

),

windows as (

    select * from {{ ref('glucose_metrics_14d') }}

),

events as (

    select * from {{ ref('glycemic_events') }}

),

latest_windows as (

    select windows.*
    from windows
    inner join subjects
        on windows.site_id = subjects.site_id
        and windows.window_end_date = subjects.last_local_date

),

window_events as (

    select
        latest_windows.site_id,
        {{ cascade.count_where("events.event_type = 'hypo_level_1'") }} as hypo_level_1_event_count,
        {{ cascade.count_where("events.event_type = 'hypo_level_2'") }} as hypo_level_2_event_count,
        {{ cascade.count_where("events.event_type = 'hypo_extended'") }} as hypo_extended_event_count,
        {{ cascade.count_where("events.event_type = 'hyper'") }} as hyper_event_count,
        {{ cascade.exact_sum("case when events.event_type = 'hypo_level_1' then events.duration_minutes else 0 end", 4) }} as hypo_level_1_event_minutes,
        {{ cascade.exact_sum("case when events.event_type = 'hyper' then events.duration_minutes else 0 end", 4) }} as hyper_event_minutes
    from latest_windows
    inner join events
        on latest_windows.site_id = events.site_id
        and events.local_date between latest_windows.window_start_date and latest_windows.window_end_date
    group by latest_windows.site_id

),

final as (

    select
        subjects.site_id,
        subjects.timezone,
        subjects.sensor_interval_minutes,
        subjects.first_local_date,
        subjects.last_local_date,
        subjects.last_reading_at,
        latest_windows.window_start_date,
        latest_windows.window_end_date,
        latest_windows.days_with_readings,
        latest_windows.reading_count,
        latest_windows.expected_reading_count,
        latest_windows.cgm_active_pct,
        latest_windows.has_sufficient_data,
        latest_windows.mean_glucose_mg_dl,
        latest_windows.mean_glucose_mmol_l,
        latest_windows.gmi_pct,
        latest_windows.gmi_mmol_mol,
        latest_windows.sd_glucose_mg_dl,
        latest_windows.cv_pct,
        latest_windows.tir_pct,
        latest_windows.titr_pct,
        latest_windows.tbr_level_1_pct,
        latest_windows.tbr_level_2_pct,
        latest_windows.tbr_pct,
        latest_windows.tar_level_1_pct,
        latest_windows.tar_level_2_pct,
        latest_windows.tar_pct,
        latest_windows.gri,
        latest_windows.gri_zone,
        latest_windows.lbgi,
        latest_windows.hbgi,
        coalesce(window_events.hypo_level_1_event_count, 0) as hypo_level_1_event_count,
        coalesce(window_events.hypo_level_2_event_count, 0) as hypo_level_2_event_count,
        coalesce(window_events.hypo_extended_event_count, 0) as hypo_extended_event_count,
        coalesce(window_events.hyper_event_count, 0) as hyper_event_count,
        coalesce(window_events.hypo_level_1_event_minutes, 0.0) as hypo_level_1_event_minutes,
        {{ cascade.metric_round('window_events.hypo_level_1_event_minutes / nullif(window_events.hypo_level_1_event_count, 0)') }}
            as hypo_level_1_event_mean_minutes,
        coalesce(window_events.hyper_event_minutes, 0.0) as hyper_event_minutes,
        {{ cascade.metric_round('window_events.hyper_event_minutes / nullif(window_events.hyper_event_count, 0)') }}
            as hyper_event_mean_minutes,
        {{ cascade.consensus_target_met('latest_windows', 'tir_pct') }} as is_tir_target_met,
        {{ cascade.consensus_target_met('latest_windows', 'tbr_pct') }} as is_tbr_target_met,
        {{ cascade.consensus_target_met('latest_windows', 'tbr_level_2_pct') }} as is_tbr_level_2_target_met,
        {{ cascade.consensus_target_met('latest_windows', 'tar_pct') }} as is_tar_target_met,
        {{ cascade.consensus_target_met('latest_windows', 'tar_level_2_pct') }} as is_tar_level_2_target_met,
        {{ cascade.consensus_target_met('latest_windows', 'cv_pct') }} as is_cv_target_met,
        {{ cascade.consensus_targets_all_met('latest_windows') }} as is_all_targets_met
    from subjects
    left join latest_windows
        on subjects.site_id = latest_windows.site_id
    left join window_events
        on subjects.site_id = window_events.site_id

)

select * from final
