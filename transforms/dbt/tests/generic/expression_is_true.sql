{# Every row satisfies a boolean SQL expression (narrow the rows with the test's `where` config). #}
{% test expression_is_true(model, expression) %}

with

failing as (

    select *
    from {{ model }}
    where
        not coalesce(({{ expression }}), false)

)

select * from failing

{% endtest %}
