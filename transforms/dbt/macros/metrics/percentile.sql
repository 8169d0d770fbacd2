{#
    Exact percentile_cont, portable: DuckDB has quantile_cont, Trino only approx_percentile.
    The same linear interpolation as percentile_cont / R's quantile type 7 / numpy's default
    (what iglu and cgmquantify use): for n sorted values v[1..n] and fraction p,
        h = 1 + (n - 1) * p,   value = v[floor(h)] + (h - floor(h)) * (v[floor(h) + 1] - v[floor(h)]).
    p is handled as an integer number of ten-thousandths, so the rank arithmetic is exact integer
    arithmetic on every engine (no 0.05 * 20 = 1.0000000000000002 surprises).

    Usage, in two steps (nulls must be filtered out before ranking):
        ranked as (
            select *, {{ cascade.percentile_ranks('glucose_mg_dl', 'site_id, time_bin') }}
            from readings
        )
        select site_id, time_bin, {{ cascade.percentile_cont('glucose_mg_dl', 0.5) }} as p50
        from ranked group by site_id, time_bin
#}
{% macro percentile_ranks(value, partition_by) -%}
    row_number() over (partition by {{ partition_by }} order by {{ value }}) as percentile_rank,
    count(*) over (partition by {{ partition_by }}) as percentile_n
{%- endmacro %}


{% macro percentile_cont(value, fraction, rank='percentile_rank', n='percentile_n') -%}
    {%- set basis = (fraction * 10000) | round | int -%}
    {%- if basis < 0 or basis > 10000 -%}
        {{ exceptions.raise_compiler_error("percentile_cont: fraction must be within [0, 1], got " ~ fraction) }}
    {%- endif -%}
    {%- set scaled = '(cast(' ~ n ~ ' as ' ~ dbt.type_bigint() ~ ') - 1) * ' ~ basis -%}
    {%- set remainder = 'mod(' ~ scaled ~ ', 10000)' -%}
    {%- set low_rank = '(1 + (' ~ scaled ~ ' - ' ~ remainder ~ ') / 10000)' -%}
    {%- set high_rank = '(case when ' ~ remainder ~ ' = 0 then ' ~ low_rank ~ ' else ' ~ low_rank ~ ' + 1 end)' -%}
    {%- set low_value = 'max(case when ' ~ rank ~ ' = ' ~ low_rank ~ ' then ' ~ cascade.as_double(value) ~ ' end)' -%}
    {%- set high_value = 'max(case when ' ~ rank ~ ' = ' ~ high_rank ~ ' then ' ~ cascade.as_double(value) ~ ' end)' -%}
    ({{ low_value }} + {{ cascade.as_double('max(' ~ remainder ~ ')') }} / 10000.0 * ({{ high_value }} - {{ low_value }}))
{%- endmacro %}
