{{ config(materialized='view') }}

-- Every local date of each subject's span (first to last reading), with or without readings:
-- the spine for rolling windows and daily summaries (a day without data is shown, not hidden).
with

subjects as (

    select * from {{ ref('dim_subject') }}
    where first_local_date is not null

),

dates as (

    select * from {{ ref('dim_date') }}

),

final as (

    select
        subjects.site_id,
        dates.date_day as local_date,
        subjects.sensor_interval_minutes
    from subjects
    inner join dates
        on dates.date_day between subjects.first_local_date and subjects.last_local_date

)

select * from final
