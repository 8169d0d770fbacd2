"""Deterministic, plausible Nightscout data for tests, the demo and benchmarks.

Why a simulator and not random numbers: the analytics downstream (time in range,
AGP by local hour, hypo events, dedup, late-data handling) only get a meaningful
test when the data behaves like a real person's data. This module simulates a
person with type 1 diabetes on a closed loop and emits the documents exactly as
the uploaders (xDrip+/Dexcom Share, Loop, AndroidAPS) POST them to Nightscout v1:
no server fields (``_id``, ``identifier``, ``srvCreated``, ``srvModified``,
``isValid``), those are added by the (fake) server.

Physiology (a linear, superposed glucose model, vectorised with numpy)
---------------------------------------------------------------------
glucose = baseline + carb effects - insulin effects + exercise + site failures
+ slow drift + dawn phenomenon, where every rate input is convolved with a
first-order return to baseline (the loop pulling glucose back, time constant
2.5 h). Carbs are absorbed on a gamma curve (peak 25/45/70 min for fast,
mixed and fatty meals), insulin acts on the oref0 exponential curve (peak 75 min,
duration 5 h), so a matched meal bolus still gives a post-meal spike. The
everyday excursions are scaled to the subject's variability and mapped onto a
right-skewed scale (long hyperglycaemic tails, short hypos); below 60 mg/dL
counter-regulation slows the fall. Therapy settings in ``subject_specs`` follow
the 1800/500 rules from a total daily dose. On top:

* 3 meals a day at varying local times and sizes plus frequent snacks; ~4 % of
  meals are not announced (no bolus), the person corrects later;
* correction boluses for sustained highs, rescue carbs ("Carb Correction") for
  lows, so hypos last tens of minutes, as in life;
* dawn phenomenon (rise between ~04:00 and ~08:00 local), exercise dips, a day
  to day insulin-sensitivity factor, and an occasional infusion-site failure
  (glucose climbs for hours, often past 400, until a site change and correction);
* the sensor: ~5 min interstitial lag, per-sensor calibration bias, correlated
  noise, a 2 h warm-up gap at every sensor change (every 10 days, aligned with the
  "Sensor Start"/"Sensor Change" treatments), short signal losses, night-time
  compression lows, clamps (below 40 is sent as 39 = LOW, above 400 as 401 =
  HIGH) and rare sensor error codes (5, 9 or 10);
* the closed loop: a devicestatus every 5 minutes (on the 5-minute tick plus a
  per-subject phase of 5-50 s, whatever the CGM interval; Loop or
  AndroidAPS/OpenAPS shape), a 30-minute temp basal whenever the recommendation
  moves or the running one is about to expire (~190-220 a day), SMBs (AAPS) /
  automatic boluses (Loop) capped by a max-IOB setting. The controller reads the
  simulated sensor but does not feed back into the glucose model (the return to
  baseline stands for it), so its IOB/COB/predictions are plausible, not exact.

What comes out (48 simulated subject-months, 30-day windows): mean 150-177
mg/dL (median 162), CV 31-37 %, TIR 53-77 % (median 67 %), TBR<70 0.5-4 %,
TAR>250 2-13 %; about 3 finger sticks a week; one subject-year at 5 min is
~105k readings, ~75-80k treatments and 105k devicestatus documents.

Local time comes from :mod:`zoneinfo` per instant, so DST transitions are real;
the travelling subject spends up to a week in another time zone in the middle of
the window (at most a third of the window), gets a new profile with that time
zone on arrival and on return, and eats by local time.

Determinism: the output is a pure function of (spec, days, interval_minutes,
seed, end); the random streams are derived from a SHA-256 of those, never from
Python's salted ``hash``.

Dirty data (``dirty=True``; exact counts from :func:`dirty_record_counts`)
--------------------------------------------------------------------------
Positions are "the first suitable sgv reading at or after X % of the window".
The clean records are all still present (``dirty=False`` gives exactly the same
documents minus the additions and without the type changes).

entries
  * duplicates: ``max(1, nominal_readings * 15 // 1000)`` consecutive sgv
    readings starting at 40 % of the window are sent again by a second uploader
    (same ``date``, ``dateString`` and ``sgv``, different ``device``); each copy
    follows its original. Not rejectable, must be deduplicated.
  * 3 readings (at 10 %, 20 % and 30 %) carry ``sgv`` as a numeric string such as
    ``"123"``: valid, must be coerced (replacing, not adding, records).
  * rejectable extra records (4): a copy of the 50 % reading dated in January
    1970; a copy of the 60 % reading dated 40 days after the window end; a
    reading at 70 % (+30 s) with ``sgv: "abc"``; a copy of the 80 % reading with
    neither ``date`` nor ``dateString``.
treatments
  * a manual 2.5 U "Correction Bolus" at 30 % of the window is always simulated;
    with ``dirty=True`` its ``insulin`` is the string ``"2.5"`` (coercible).
  * rejectable extra record (1): a careportal "Note" with
    ``created_at: "not a date"`` (and no ``date``).
devicestatus
  * rejectable extra record (1): a copy of the status at 50 % of the window whose
    ``created_at`` (and pump clock) reset to January 1970.
profile
  * nothing dirty.

A record is *rejectable* when its event time (entries: ``date``, else
``dateString``; treatments and devicestatus: ``created_at``; profile:
``startDate``) is missing or unparseable, before 2000-01-01, or more than one
day after ingestion (the future entry is 40 days after ``end``, so it stays
rejectable for any ingestion within 39 days of ``end``), or when a typed
analytic field (sgv, mbg, insulin, carbs, rate, duration) is present but neither
a number nor a numeric string.
"""

from cascade_dev.fake_nightscout.synthetic.dirty import dirty_record_counts
from cascade_dev.fake_nightscout.synthetic.people import (
    COLLECTIONS,
    DUPLICATE_PERMILLE,
    ERROR_CODES,
    HIGH_CLAMP,
    LOW_CLAMP,
    SubjectSpec,
    subject_specs,
)
from cascade_dev.fake_nightscout.synthetic.subjects import generate_subject, scripted_entries

__all__ = [
    "COLLECTIONS",
    "DUPLICATE_PERMILLE",
    "ERROR_CODES",
    "HIGH_CLAMP",
    "LOW_CLAMP",
    "SubjectSpec",
    "dirty_record_counts",
    "generate_subject",
    "scripted_entries",
    "subject_specs",
]
