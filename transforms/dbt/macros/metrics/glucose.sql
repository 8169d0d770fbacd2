{#
    CGM metric formulas, one definition each, as defined in docs/TRANSFORM.md (Metrics), after:
      - thresholds: International Consensus on Time in Range (Battelino et al., Diabetes Care 2019)
      - GMI: Bergenstal et al., Diabetes Care 2018
      - GRI: Klonoff et al., J Diabetes Sci Technol 2023
      - LBGI/HBGI: Kovatchev et al., Diabetes Care 1997/1998
    All percentages are percent of READINGS (not of time). Glucose is mg/dL; 1 mmol/L = 18.0182 mg/dL.
#}

{% macro mg_dl_to_mmol_l(mg_dl) -%}
    ({{ cascade.as_double(mg_dl) }} / {{ var('mg_dl_per_mmol_l') }})
{%- endmacro %}


{# Published metrics are rounded to 4 decimals: far below clinical resolution, and it keeps
   re-computed values bit-identical across runs and engines. #}
{% macro metric_round(expr, decimals=4) -%}
    round({{ expr }}, {{ decimals }})
{%- endmacro %}


{# Kovatchev's symmetrising transform f(BG) = 1.509 * ((ln BG)^1.084 - 5.381), BG in mg/dL. #}
{% macro bg_risk_transform(glucose_mg_dl) -%}
    (1.509 * (power(ln({{ cascade.as_double(glucose_mg_dl) }}), 1.084) - 5.381))
{%- endmacro %}

{# rl(BG) = 10 f^2 where f < 0, else 0 (low-glucose risk of one reading). #}
{% macro bg_low_risk(glucose_mg_dl) -%}
    case
        when {{ glucose_mg_dl }} is null then null
        when {{ cascade.bg_risk_transform(glucose_mg_dl) }} < 0
            then 10 * power({{ cascade.bg_risk_transform(glucose_mg_dl) }}, 2)
        else 0.0
    end
{%- endmacro %}

{# rh(BG) = 10 f^2 where f > 0, else 0 (high-glucose risk of one reading). #}
{% macro bg_high_risk(glucose_mg_dl) -%}
    case
        when {{ glucose_mg_dl }} is null then null
        when {{ cascade.bg_risk_transform(glucose_mg_dl) }} > 0
            then 10 * power({{ cascade.bg_risk_transform(glucose_mg_dl) }}, 2)
        else 0.0
    end
{%- endmacro %}


{#
    Additive sufficient statistics of a set of readings (aggregate expressions). Every metric is
    a function of these, so daily rows can be summed into any window exactly (integers and exact
    decimal sums): the 14-day metrics are computed from daily sums, not from daily percentages.
    Bands (consensus, inclusive, integer mg/dL): <54 | 54-69 | 70-180 | 181-250 | >250; tight 70-140.
#}
{% macro glucose_sums(glucose_mg_dl, lbgi_risk='lbgi_risk', hbgi_risk='hbgi_risk') -%}
    count({{ glucose_mg_dl }}) as reading_count,
    cast(sum({{ glucose_mg_dl }}) as {{ dbt.type_bigint() }}) as glucose_sum_mg_dl,
    cast(sum(cast({{ glucose_mg_dl }} as {{ dbt.type_bigint() }}) * {{ glucose_mg_dl }}) as {{ dbt.type_bigint() }}) as glucose_sum_of_squares,
    {{ cascade.count_where(glucose_mg_dl ~ ' < 54') }} as readings_below_54_count,
    {{ cascade.count_where(glucose_mg_dl ~ ' >= 54 and ' ~ glucose_mg_dl ~ ' < 70') }} as readings_54_69_count,
    {{ cascade.count_where(glucose_mg_dl ~ ' >= 70 and ' ~ glucose_mg_dl ~ ' <= 180') }} as readings_70_180_count,
    {{ cascade.count_where(glucose_mg_dl ~ ' >= 70 and ' ~ glucose_mg_dl ~ ' <= 140') }} as readings_70_140_count,
    {{ cascade.count_where(glucose_mg_dl ~ ' > 180 and ' ~ glucose_mg_dl ~ ' <= 250') }} as readings_181_250_count,
    {{ cascade.count_where(glucose_mg_dl ~ ' > 250') }} as readings_above_250_count,
    {{ cascade.exact_sum(lbgi_risk) }} as lbgi_risk_sum,
    {{ cascade.exact_sum(hbgi_risk) }} as hbgi_risk_sum
{%- endmacro %}

{# The names glucose_sums() produces, for models that carry or re-aggregate them. #}
{% macro glucose_sum_columns() -%}
    {{ return(['reading_count', 'glucose_sum_mg_dl', 'glucose_sum_of_squares',
               'readings_below_54_count', 'readings_54_69_count', 'readings_70_180_count',
               'readings_70_140_count', 'readings_181_250_count', 'readings_above_250_count',
               'lbgi_risk_sum', 'hbgi_risk_sum']) }}
{%- endmacro %}


{# Number of rows where a condition holds, as BIGINT (DuckDB would sum into a HUGEINT). #}
{% macro count_where(condition) -%}
    cast(sum(case when {{ condition }} then 1 else 0 end) as {{ dbt.type_bigint() }})
{%- endmacro %}


{% macro pct_of_readings(count_column, n='reading_count') -%}
    {{ cascade.metric_round('100.0 * ' ~ cascade.as_double(count_column) ~ ' / nullif(' ~ n ~ ', 0)') }}
{%- endmacro %}


{#
    Metric columns from the columns of glucose_sums() in the same row (select expressions).
      mean = sum / n
      SD   = sample SD (n - 1 denominator, as iglu::sd_glu / R sd()), from exact integer sums:
             sqrt((n * sum(x^2) - sum(x)^2) / (n * (n - 1)))
      CV % = 100 * SD / mean
      GMI % = 3.31 + 0.02392 * mean_mg_dl;  GMI mmol/mol = 12.71 + 4.70587 * mean_mmol_l
      GRI  = min(100, 3.0 * (VLow + 0.8 * Low) + 1.6 * (VHigh + 0.5 * High))
      LBGI = mean over all readings of rl(BG); HBGI = mean of rh(BG)
#}
{% macro glucose_metrics_from_sums() -%}
    {%- set n = cascade.as_double('reading_count') -%}
    {%- set mean = cascade.as_double('glucose_sum_mg_dl') ~ ' / nullif(' ~ n ~ ', 0)' -%}
    {%- set variance -%}
        case when reading_count > 1 then
            {{ cascade.as_double('reading_count * glucose_sum_of_squares - glucose_sum_mg_dl * glucose_sum_mg_dl') }}
            / ({{ n }} * ({{ n }} - 1))
        end
    {%- endset -%}
    {%- set sd = 'sqrt(' ~ variance ~ ')' -%}
    {%- set vlow = '100.0 * ' ~ cascade.as_double('readings_below_54_count') ~ ' / nullif(' ~ n ~ ', 0)' -%}
    {%- set low = '100.0 * ' ~ cascade.as_double('readings_54_69_count') ~ ' / nullif(' ~ n ~ ', 0)' -%}
    {%- set high = '100.0 * ' ~ cascade.as_double('readings_181_250_count') ~ ' / nullif(' ~ n ~ ', 0)' -%}
    {%- set vhigh = '100.0 * ' ~ cascade.as_double('readings_above_250_count') ~ ' / nullif(' ~ n ~ ', 0)' -%}
    {%- set hypo = '(' ~ vlow ~ ' + 0.8 * ' ~ low ~ ')' -%}
    {%- set hyper = '(' ~ vhigh ~ ' + 0.5 * ' ~ high ~ ')' -%}
    {%- set gri = 'least(100.0, 3.0 * ' ~ hypo ~ ' + 1.6 * ' ~ hyper ~ ')' -%}
    {{ cascade.metric_round(mean) }} as mean_glucose_mg_dl,
    {{ cascade.metric_round(cascade.mg_dl_to_mmol_l(mean)) }} as mean_glucose_mmol_l,
    {{ cascade.metric_round(sd) }} as sd_glucose_mg_dl,
    {{ cascade.metric_round('100.0 * ' ~ sd ~ ' / nullif(' ~ mean ~ ', 0)') }} as cv_pct,
    {{ cascade.metric_round('3.31 + 0.02392 * ' ~ mean) }} as gmi_pct,
    {{ cascade.metric_round('12.71 + 4.70587 * ' ~ cascade.mg_dl_to_mmol_l(mean)) }} as gmi_mmol_mol,
    {{ cascade.pct_of_readings('readings_70_180_count') }} as tir_pct,
    {{ cascade.pct_of_readings('readings_70_140_count') }} as titr_pct,
    {{ cascade.pct_of_readings('readings_54_69_count') }} as tbr_level_1_pct,
    {{ cascade.pct_of_readings('readings_below_54_count') }} as tbr_level_2_pct,
    {{ cascade.pct_of_readings('readings_54_69_count + readings_below_54_count') }} as tbr_pct,
    {{ cascade.pct_of_readings('readings_181_250_count') }} as tar_level_1_pct,
    {{ cascade.pct_of_readings('readings_above_250_count') }} as tar_level_2_pct,
    {{ cascade.pct_of_readings('readings_181_250_count + readings_above_250_count') }} as tar_pct,
    {{ cascade.metric_round(hypo) }} as gri_hypo_component,
    {{ cascade.metric_round(hyper) }} as gri_hyper_component,
    {{ cascade.metric_round(gri) }} as gri,
    case
        when reading_count = 0 then null
        when {{ cascade.metric_round(gri) }} <= 20 then 'A'
        when {{ cascade.metric_round(gri) }} <= 40 then 'B'
        when {{ cascade.metric_round(gri) }} <= 60 then 'C'
        when {{ cascade.metric_round(gri) }} <= 80 then 'D'
        else 'E'
    end as gri_zone,
    {{ cascade.metric_round('lbgi_risk_sum / nullif(' ~ n ~ ', 0)') }} as lbgi,
    {{ cascade.metric_round('hbgi_risk_sum / nullif(' ~ n ~ ', 0)') }} as hbgi
{%- endmacro %}


{# % time CGM active = readings received / readings expected (capped at 100), and whether it
   reaches the consensus minimum (70%) for a representative report. #}
{% macro cgm_activity(received='reading_count', expected='expected_reading_count') -%}
    {{ cascade.metric_round('least(100.0, 100.0 * ' ~ cascade.as_double(received) ~ ' / nullif(' ~ expected ~ ', 0))') }} as cgm_active_pct,
    coalesce(100.0 * {{ cascade.as_double(received) }} / nullif({{ expected }}, 0) >= {{ var('min_cgm_active_pct') }}, false) as has_sufficient_data
{%- endmacro %}
