{#
    The international-consensus targets (Battelino et al., Diabetes Care 2019) live once, as the
    var `consensus_targets` in dbt_project.yml: metric -> [comparison, % of readings]. The marts
    and the Python report (cascade.transform.project.domain_constants) both read them from there.
#}

{% macro consensus_target_met(relation, metric) -%}
    {%- set targets = var('consensus_targets') -%}
    {%- if metric not in targets -%}
        {{ exceptions.raise_compiler_error("no consensus target for " ~ metric ~ " in var consensus_targets") }}
    {%- endif -%}
    {%- set comparison, threshold = targets[metric] -%}
    {%- if comparison not in ('>', '<', '<=') -%}
        {{ exceptions.raise_compiler_error("consensus_targets." ~ metric ~ ": the comparison must be >, < or <=, not " ~ comparison) }}
    {%- endif -%}
    {{ relation }}.{{ metric }} {{ comparison }} {{ threshold }}
{%- endmacro %}


{# Whether every consensus target is met (a conjunction over the var, in its order). #}
{% macro consensus_targets_all_met(relation) -%}
    (
    {%- for metric in var('consensus_targets') %}
        {{ 'and ' if not loop.first }}{{ cascade.consensus_target_met(relation, metric) }}
    {%- endfor %}
    )
{%- endmacro %}
