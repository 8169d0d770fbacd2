{# The combination of columns is unique (a model's composite grain). Duplicate keys are returned. #}
{% test unique_combination(model, combination_of_columns) %}

with

keys as (

    select
        {{ combination_of_columns | join(', ') }},
        count(*) as row_count
    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}

),

duplicated as (

    select * from keys where row_count > 1

)

select * from duplicated

{% endtest %}
