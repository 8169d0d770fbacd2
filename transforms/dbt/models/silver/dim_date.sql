-- One row per calendar day spanning every local date that has data (readings or treatments).
with

readings as (

    select * from {{ ref('fct_glucose_readings') }}

),

treatments as (

    select * from {{ ref('fct_treatments') }}

),

dated as (

    select local_date from readings
    union all
    select local_date from treatments

),

bounds as (

    select
        min(local_date) as first_date,
        max(local_date) as last_date
    from dated

),

day_numbers as (

    -- 100 years of days; filtered to the span below.
    {{ dbt.generate_series(36600) }}

),

spine as (

    select cast({{ dbt.dateadd('day', 'cast(day_numbers.generated_number - 1 as ' ~ dbt.type_bigint() ~ ')', 'bounds.first_date') }} as date) as date_day
    from bounds
    cross join day_numbers
    where day_numbers.generated_number - 1 <= {{ dbt.datediff('bounds.first_date', 'bounds.last_date', 'day') }}

),

final as (

    select
        date_day,
        cast(extract(year from date_day) as {{ dbt.type_int() }}) as year_number,
        cast(extract(month from date_day) as {{ dbt.type_int() }}) as month_number,
        cast(extract(day from date_day) as {{ dbt.type_int() }}) as day_of_month,
        {{ cascade.iso_day_of_week('date_day') }} as iso_day_of_week,
        {{ cascade.day_of_week_name('date_day') }} as day_of_week_name,
        {{ cascade.iso_day_of_week('date_day') }} >= 6 as is_weekend,
        cast({{ dbt.date_trunc('week', 'date_day') }} as date) as week_start_date,
        cast({{ dbt.date_trunc('month', 'date_day') }} as date) as month_start_date
    from spine

)

select * from final
