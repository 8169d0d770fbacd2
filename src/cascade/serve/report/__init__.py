"""The one-page AGP report (`cascade report`): IDC AGP report v4 layout, from the gold tables.

Every number on the page is read from the lake, never recomputed here (one implementation of each
metric: the dbt models, see docs/TRANSFORM.md, Metrics):

- the window's metrics (`WINDOW_DAYS` days): `gold.glucose_metrics_14d` at `window_end_date = end`;
- the AGP percentiles: `gold.agp_percentiles` (same window, local time-of-day bins);
- the glycaemic events of the window: `gold.glycemic_events` (events starting on a local date
  of the window, counted and their durations added up);
- the daily profiles: `silver.fct_glucose_readings` (each reading's own local time) and the
  per-day TIR and mean of `gold.glucose_metrics_daily`;
- the subject's span and sensor interval: `silver.dim_subject`.

The window length, the % active minimum, the gap rule, the AGP bin width, the mmol/L factor and
the consensus targets are the dbt project's vars (`cascade.transform.project.domain_constants`).

Python only compares the published values with the consensus targets (Battelino et al., Diabetes
Care 2019) to mark each one met or not met, and draws the charts.

The page: header (subject, window, % time CGM active, flagged below the consensus minimum,
sensor interval), "Glucose statistics and targets" table, "Time in ranges" stacked bar, the AGP
curve, and one small glucose trace per day. HTML is self-contained (inline CSS, inline SVG charts from
matplotlib, no scripts, fonts or links): it prints on one A4 or Letter page. `out` ending in
`.pdf` gives the same page drawn by matplotlib as a one-page A4 PDF.

The package: `model` (constants, colours, the page's data), `data` (reading it from the lake),
`charts` (matplotlib), `render` (HTML and PDF files).
"""

from cascade.serve.report.model import BANDS, MAX_BRIDGED_INTERVALS, TARGETS, WINDOW_DAYS
from cascade.serve.report.render import render_report

__all__ = ["BANDS", "MAX_BRIDGED_INTERVALS", "TARGETS", "WINDOW_DAYS", "render_report"]
