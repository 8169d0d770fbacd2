{#
    Every non-null value of the column lies within [min_value, max_value] (inclusive unless
    inclusive=false); either bound may be omitted. Rows that break it are returned.
#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}

with

checked as (

    select {{ column_name }} as checked_value
    from {{ model }}
    where {{ column_name }} is not null

),

out_of_range as (

    select checked_value
    from checked
    where
        1 = 0
        {%- if min_value is not none %}
        or checked_value {{ '<' if inclusive else '<=' }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
        or checked_value {{ '>' if inclusive else '>=' }} {{ max_value }}
        {%- endif %}

)

select * from out_of_range

{% endtest %}
