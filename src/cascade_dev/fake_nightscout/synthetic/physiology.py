"""The glucose physiology: insulin and carbohydrate kernels, the simulation, and the CGM sensor."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cascade_dev.fake_nightscout.synthetic.clock import _Timeline
from cascade_dev.fake_nightscout.synthetic.people import (
    _NOTES,
    ERROR_CODES,
    HIGH_CLAMP,
    LOW_CLAMP,
    MARKER_BOLUS_UNITS,
    MINUTES_PER_DAY,
    MS_PER_DAY,
    MS_PER_MINUTE,
    SENSOR_SESSION_DAYS,
    SITE_CHANGE_DAYS,
    WARMUP_MINUTES,
    BoolArray,
    FloatArray,
    IntArray,
    SubjectSpec,
    _rng,
)
from cascade_dev.fake_nightscout.synthetic.profiles import CARB_RATIO_SHAPE, _hourly

# --------------------------------------------------------------------------- kernels


def _fft_convolve(signal: FloatArray, kernel: FloatArray) -> FloatArray:
    """Causal convolution truncated to len(signal); FFT keeps a 1-min year fast."""
    n = len(signal)
    size = 1 << (n + len(kernel) - 2).bit_length()
    out = np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(kernel, size), size)[:n]
    return np.asarray(out, dtype=np.float64)


def _insulin_curves(
    t: FloatArray, peak: float = 75.0, dia: float = 300.0
) -> tuple[FloatArray, FloatArray]:
    """oref0/Loop exponential insulin model: (activity per minute, insulin on board)."""
    tau = peak * (1 - peak / dia) / (1 - 2 * peak / dia)
    a = 2 * tau / dia
    s = 1 / (1 - a + (1 + a) * math.exp(-dia / tau))
    tt = np.minimum(t, dia)
    activity = (s / tau**2) * tt * (1 - tt / dia) * np.exp(-tt / tau)
    activity[t >= dia] = 0.0
    iob = 1 - s * (1 - a) * ((tt**2 / (tau * dia * (1 - a)) - tt / tau - 1) * np.exp(-tt / tau) + 1)
    iob[t >= dia] = 0.0
    return activity, np.clip(iob, 0.0, 1.0)


def _carb_curves(t: FloatArray, peak: float) -> tuple[FloatArray, FloatArray]:
    """Gamma(2) absorption: (fraction absorbed per minute, fraction still on board)."""
    rate = t / peak**2 * np.exp(-t / peak)
    remaining = (1 + t / peak) * np.exp(-t / peak)
    return rate, remaining


@dataclass(frozen=True)
class _Kernels:
    """Glucose responses (mg/dL per unit input) sampled on the grid."""

    carb: tuple[FloatArray, ...]  # per gram x CSF, for absorption classes
    rescue: FloatArray
    insulin: FloatArray  # per unit x ISF
    decay: FloatArray  # response to a direct rate input (mg/dL per step)
    iob_grid: FloatArray
    cob_grid: FloatArray


CARB_PEAKS_MIN = (25.0, 45.0, 70.0)  # fast, mixed, fatty
RESCUE_PEAK_MIN = 12.0
RETURN_TAU_MIN = 150.0


def _kernels(step_min: int) -> _Kernels:
    n = int(12 * 60 / step_min)
    t = np.arange(n, dtype=np.float64) * step_min
    decay = np.exp(-t / RETURN_TAU_MIN)

    def through_decay(rate: FloatArray) -> FloatArray:
        return np.convolve(rate * step_min, decay)[:n]

    activity, iob = _insulin_curves(t)
    carb = tuple(through_decay(_carb_curves(t, p)[0]) for p in CARB_PEAKS_MIN)
    rescue = through_decay(_carb_curves(t, RESCUE_PEAK_MIN)[0])
    _, cob = _carb_curves(t, CARB_PEAKS_MIN[1])
    cob[t > 300] = 0.0
    return _Kernels(carb, rescue, through_decay(activity), decay, iob, cob)


# --------------------------------------------------------------------------- simulation


@dataclass
class _Bolus:
    index: int
    units: float
    kind: str  # "meal", "correction", "marker", "failure"
    carbs: float = 0.0
    absorption_min: int = 0


@dataclass
class _Events:
    boluses: list[_Bolus]
    rescues: list[tuple[int, float]]  # (index, grams)
    exercises: list[tuple[int, int, float]]  # (start index, duration min, target)
    failures: list[tuple[int, int]]  # (start index, end index)
    notes: list[tuple[int, str]]


@dataclass
class _Sim:
    true_glucose: FloatArray
    sensor: FloatArray  # NaN where there is no reading
    error_code: IntArray  # 0, or the code sent instead of a reading
    noise_level: IntArray
    sensor_changes_ms: list[int]
    site_changes_ms: list[int]
    events: _Events
    insulin_units: FloatArray  # announced/delivered boluses on the grid
    announced_carbs: FloatArray


def _day_factor(tl: _Timeline, per_day: FloatArray) -> FloatArray:
    """Expand a per-local-day value onto the grid."""
    day = tl.local_monotone // MINUTES_PER_DAY - tl.local_days()[0]
    return np.asarray(per_day[np.clip(day, 0, len(per_day) - 1)], dtype=np.float64)


def _episode_starts(mask: BoolArray, min_steps: int, refractory_steps: int) -> list[int]:
    """Indices where ``mask`` has held for ``min_steps`` consecutive steps, spaced apart."""
    m = mask.astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], m, [0]))))
    starts, stops = edges[::2], edges[1::2]
    out: list[int] = []
    last = -(10**12)
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        if b - a < min_steps:
            continue
        i = a + min_steps - 1
        while i < b:
            if i - last >= refractory_steps:
                out.append(i)
                last = i
            i += refractory_steps
    return out


def _simulate(spec: SubjectSpec, tl: _Timeline, base_seed: int, marker_index: int) -> _Sim:
    n, dt = tl.n, tl.step_min
    k = _kernels(dt)
    days = tl.local_days()
    nd = len(days)
    day_start = (days * MINUTES_PER_DAY).astype(np.float64)
    csf, isf = spec.carb_sensitivity, spec.isf_mg_dl_per_u

    # --- meals and their boluses -------------------------------------------------
    rng = _rng(base_seed, "meals")
    # (mean local minute, sd minutes, mean grams, absorption class): breakfast, lunch, dinner.
    meal_table = ((435.0, 40.0, 35.0, 0), (765.0, 45.0, 55.0, 1), (1140.0, 50.0, 70.0, 1))
    carb_in = [np.zeros(n) for _ in CARB_PEAKS_MIN]
    insulin = np.zeros(n)
    boluses: list[_Bolus] = []
    notes: list[tuple[int, str]] = []
    meal_rows: list[tuple[FloatArray, FloatArray, IntArray]] = []
    for mean_min, sd_min, mean_carbs, cls in meal_table:
        when = day_start + np.clip(rng.normal(mean_min, sd_min, nd), mean_min - 150, mean_min + 150)
        grams = mean_carbs * spec.meal_carb_scale * rng.lognormal(0, 0.3, nd)
        classes = np.full(nd, cls, dtype=np.int64)
        if mean_min > 1000:  # one dinner in six is pizza-like: larger and slowly absorbed
            fatty = rng.random(nd) < 0.17
            grams = np.where(fatty, grams * 1.4, grams)
            classes[fatty] = 2
        meal_rows.append((when, np.clip(np.round(grams / 5) * 5, 10, 120), classes))
    snack = rng.random(nd) < 0.45
    snack_when = day_start + rng.choice([630.0, 960.0, 1290.0], nd) + rng.normal(0, 40, nd)
    snack_grams = np.round(rng.uniform(10, 30, nd) / 5) * 5
    meal_rows.append(
        (snack_when[snack], snack_grams[snack], np.zeros(int(snack.sum()), dtype=np.int64))
    )

    when_all = np.concatenate([r[0] for r in meal_rows])
    grams_all = np.concatenate([r[1] for r in meal_rows])
    class_all = np.concatenate([r[2] for r in meal_rows])
    order = np.argsort(when_all, kind="stable")
    when_all, grams_all, class_all = when_all[order], grams_all[order], class_all[order]
    m = len(when_all)
    missed = rng.random(m) < spec.missed_bolus_probability
    error = np.clip(rng.lognormal(0, spec.bolus_error_sigma, m), 0.7, 1.35)
    prebolus = np.clip(rng.normal(-8, 10, m), -30, 25)
    note_roll = rng.random(m)
    idx, valid = tl.local_to_index(when_all)
    sens_day = np.exp(rng.normal(0, 0.12, nd))
    sens = _day_factor(tl, sens_day)
    announced = np.zeros(n)
    cr_by_hour = _hourly(CARB_RATIO_SHAPE)  # the profile's stronger breakfast ratio
    for j in range(m):
        if not valid[j]:
            continue
        i = int(idx[j])
        carb_in[int(class_all[j])][i] += grams_all[j]
        if missed[j]:
            continue
        ratio = spec.carb_ratio_g_per_u * cr_by_hour[int(when_all[j] % MINUTES_PER_DAY) // 60]
        units = round(float(grams_all[j] / ratio * error[j]) * 20) / 20
        bi = int(np.clip(i + round(prebolus[j] / dt), 0, n - 1))
        absorption = (120, 180, 300)[int(class_all[j])]
        boluses.append(_Bolus(bi, units, "meal", float(grams_all[j]), absorption))
        insulin[bi] += units
        announced[bi] += grams_all[j]
        if class_all[j] == 2 and note_roll[j] < 0.5:
            notes.append((bi, "pizza night"))
        elif note_roll[j] < 0.04:
            notes.append((bi, _NOTES[int(note_roll[j] * 1000) % len(_NOTES)]))

    # --- exercise, site failures, drift, dawn -------------------------------------
    rng = _rng(base_seed, "exercise")
    rate_in = np.zeros(n)
    exercises: list[tuple[int, int, float]] = []
    ex_day = rng.random(nd) < spec.exercise_per_week / 7
    ex_when = day_start + np.clip(rng.normal(1050, 80, nd), 480, 1290)
    ex_dur = rng.choice([30, 45, 60, 75, 90], nd)
    ex_rate = rng.uniform(0.6, 1.3, nd)
    ex_tt = rng.random(nd) < 0.6
    ex_idx, ex_valid = tl.local_to_index(ex_when)
    for d in np.flatnonzero(ex_day & ex_valid).tolist():
        a = int(ex_idx[d])
        b = min(n, a + tl.steps(float(ex_dur[d])))
        rate_in[a:b] -= ex_rate[d] * dt
        exercises.append((a, int(ex_dur[d]), 140.0 if ex_tt[d] else 0.0))

    rng = _rng(base_seed, "failures")
    failures: list[tuple[int, int]] = []
    failure_in = np.zeros(n)
    fail_day = rng.random(nd) < 1 / 40
    fail_when = day_start + rng.uniform(0, MINUTES_PER_DAY, nd)
    fail_hours = rng.uniform(3, 7, nd)
    fail_rate = rng.uniform(0.8, 1.5, nd)
    fail_idx, fail_valid = tl.local_to_index(fail_when)
    for d in np.flatnonzero(fail_day & fail_valid).tolist():
        a = int(fail_idx[d])
        b = min(n - 1, a + tl.steps(float(fail_hours[d]) * 60))
        if b - a < 6:
            continue
        failure_in[a:b] += fail_rate[d] * dt
        failures.append((a, b))

    rng = _rng(base_seed, "drift")
    ou = np.exp(-np.arange(int(600 / dt)) * dt / 120.0)
    drift = _fft_convolve(rng.normal(0, 1, n), ou)
    drift *= 18.0 / max(float(drift.std()), 1e-9)

    rng = _rng(base_seed, "dawn")
    minute_of_day = (tl.local_min % MINUTES_PER_DAY).astype(np.float64)
    rise = np.clip((minute_of_day - 210) / 240, 0, 1)
    fall = np.clip((630 - minute_of_day) / 180, 0, 1)
    bump = np.where(
        minute_of_day < 450, np.sin(rise * np.pi / 2) ** 2, np.sin(fall * np.pi / 2) ** 2
    )
    dawn = spec.dawn_mg_dl * bump * _day_factor(tl, rng.uniform(0.6, 1.4, nd))

    insulin[marker_index] += MARKER_BOLUS_UNITS
    boluses.append(_Bolus(marker_index, MARKER_BOLUS_UNITS, "marker"))

    # --- pass 1: glucose without corrections or rescues ----------------------------
    carb_effect = sum(
        (_fft_convolve(c, kern) for c, kern in zip(carb_in, k.carb, strict=True)),
        np.zeros(n),
    )
    dev = csf * carb_effect - isf * _fft_convolve(insulin * sens, k.insulin)
    dev += _fft_convolve(rate_in, k.decay) + drift + dawn
    # Scale the everyday excursions to the subject's variability and skew them
    # (glucose is right-skewed: long hyperglycaemic tails, short hypoglycaemic
    # ones); site failures come on top, so a failure does not flatten every other day.
    mean_target = spec.mean_glucose_mg_dl
    target_sd = spec.mean_glucose_mg_dl * spec.glucose_cv * 1.06
    centred = dev - float(dev.mean())
    scale = target_sd / max(float(centred.std()), 1e-9)
    g1 = _skew(scale * centred, mean_target)
    scale *= target_sd / max(float(g1.std()), 1e-9)
    scale = float(np.clip(scale, 0.4, 2.5))
    g1 = _skew(scale * centred, mean_target)
    g1 += scale * _fft_convolve(failure_in, k.decay)
    g1 += mean_target - float(g1.mean())

    # --- pass 2: correction boluses for sustained highs and after site failures -----
    corrections = np.zeros(n)
    recent = np.concatenate(([0], np.cumsum(insulin > 0)))
    window = tl.steps(150)
    forced = {b for _, b in failures}
    candidates = set(_episode_starts(g1 > 240, tl.steps(30), tl.steps(180))) | forced
    for i in sorted(candidates):
        if i not in forced and recent[i + 1] - recent[max(0, i + 1 - window)] > 0:
            continue
        units = round(float(np.clip((g1[i] - spec.target_mg_dl) / isf * 0.6, 0.3, 10.0)) * 20) / 20
        corrections[i] += units
        boluses.append(_Bolus(i, units, "failure" if i in forced else "correction"))
    insulin += corrections
    # After a site failure the rise already decays on its own (the failure input
    # stops when the new site works), which stands for the forced correction.
    acting = corrections.copy()
    acting[sorted(forced)] = 0.0
    g2 = g1 - isf * _fft_convolve(acting * sens, k.insulin)

    # --- pass 3: rescue carbs for lows (a second round when the first was not enough) ---
    rng = _rng(base_seed, "rescue")
    rescue_in = np.zeros(n)
    rescues: list[tuple[int, float]] = []
    glucose = g2
    for threshold, min_minutes in ((60.0, 15.0), (54.0, 25.0)):
        added = np.zeros(n)
        last = np.full(n, -(10**9), dtype=np.int64)
        if rescues:
            marks = np.zeros(n, dtype=np.int64) - 10**9
            marks[[r[0] for r in rescues]] = [r[0] for r in rescues]
            last = np.maximum.accumulate(marks)
        for i in _episode_starts(glucose < threshold, tl.steps(min_minutes), tl.steps(60)):
            if i - last[i] < tl.steps(25):
                continue
            j = min(n - 1, i + tl.steps(float(rng.choice([0, 5, 10, 20]))))
            back = tl.steps(15)
            falling_fast = i >= back and glucose[i] - glucose[i - back] < -20
            rescue_g = float(rng.choice([10, 15, 15, 20, 25])) + (10.0 if falling_fast else 0.0)
            added[j] += rescue_g
            rescues.append((j, rescue_g))
        rescue_in += added
        glucose = glucose + csf * _fft_convolve(added, k.rescue)
    rescues.sort()
    announced += rescue_in
    # Counter-regulation (glucagon, liver) slows the fall below ~60 mg/dL.
    glucose = np.where(glucose < 60.0, 20.0 + 40.0 * np.exp((glucose - 60.0) / 40.0), glucose)

    events = _Events(sorted(boluses, key=lambda b: b.index), rescues, exercises, failures, notes)
    sensor, codes, noise_level, sensor_changes, site_changes = _sensor(tl, glucose, base_seed)
    return _Sim(
        glucose,
        sensor,
        codes,
        noise_level,
        sensor_changes,
        site_changes,
        events,
        insulin,
        announced,
    )


SKEW = 0.45


def _skew(deviation: FloatArray, centre: float) -> FloatArray:
    """Map a symmetric deviation onto right-skewed glucose around ``centre``."""
    return centre + centre / SKEW * np.expm1(np.clip(SKEW * deviation / centre, -5.0, 2.0))


def _periodic_ms(
    tl: _Timeline, rng: np.random.Generator, period_days: int, jitter_min: float
) -> list[int]:
    """Times every ``period_days`` from a random phase, each with a small jitter."""
    period = period_days * MS_PER_DAY
    phase = int(rng.uniform(0, period))
    first = tl.start_ms - period + phase
    count = (tl.end_ms - first) // period + 2
    jitter = rng.uniform(0, jitter_min, count) * MS_PER_MINUTE
    times = [first + k * period + int(jitter[k]) for k in range(count)]
    times = [t - t % MS_PER_MINUTE for t in times]
    return [t for t in times if t < tl.end_ms]


def _sensor(
    tl: _Timeline, glucose: FloatArray, base_seed: int
) -> tuple[FloatArray, IntArray, IntArray, list[int], list[int]]:
    """What the CGM reports: lag, bias, noise, compression lows, gaps, clamps, codes."""
    n, dt = tl.n, tl.step_min
    rng = _rng(base_seed, "sensor")
    days = tl.local_days()
    nd = len(days)
    day_start = (days * MINUTES_PER_DAY).astype(np.float64)

    lag = np.exp(-np.arange(int(30 / dt) + 1) * dt / 5.0)
    lag /= lag.sum()
    lagged = _fft_convolve(glucose - glucose[0], lag) + glucose[0]

    changes_all = _periodic_ms(tl, rng, SENSOR_SESSION_DAYS, 180)
    session = np.searchsorted(np.array(changes_all, dtype=np.int64), tl.t_ms, side="right")
    bias = np.exp(rng.normal(0, 0.04, len(changes_all) + 1))[session]
    since_change = np.full(n, 10**9, dtype=np.int64)
    if changes_all:
        prev = np.array([-(10**15), *changes_all], dtype=np.int64)[session]
        since_change = (tl.t_ms - prev) // MS_PER_MINUTE
    first_day = since_change < MINUTES_PER_DAY

    ar = np.exp(-np.arange(int(60 / dt) + 1) * dt / 8.0)
    colored = _fft_convolve(rng.normal(0, 1, n), ar)
    colored /= max(float(colored.std()), 1e-9)
    noise = colored * np.where(first_day, 7.0, 4.0) + rng.normal(0, 1.2, n)
    noise_level = np.where(first_day, 2, 1).astype(np.int64)

    comp = np.zeros(n)
    night = rng.random(nd) < 0.09
    c_when = day_start + rng.uniform(60, 300, nd)
    c_depth = rng.uniform(30, 60, nd)
    c_hold = rng.uniform(15, 45, nd)
    c_idx, c_valid = tl.local_to_index(c_when)
    for d in np.flatnonzero(night & c_valid).tolist():
        t_rel = np.arange(int((25 + c_hold[d]) / dt) + 2) * dt
        shape = np.minimum.reduce(
            [t_rel / 8.0, np.ones_like(t_rel), (25 + c_hold[d] - t_rel) / 12.0]
        )
        shape = np.clip(shape, 0, 1) * c_depth[d]
        a = int(c_idx[d])
        b = min(n, a + len(shape))
        comp[a:b] = np.maximum(comp[a:b], shape[: b - a])
        noise_level[a:b] = np.maximum(noise_level[a:b], 3)

    sensor = np.round(lagged * bias + noise - comp)
    sensor = np.where(sensor < 40, LOW_CLAMP, np.where(sensor > 400, HIGH_CLAMP, sensor))

    codes = np.zeros(n, dtype=np.int64)
    err_day = rng.random(nd) < 0.07
    err_when = day_start + rng.uniform(0, MINUTES_PER_DAY, nd)
    err_len = rng.integers(1, 4, nd)
    err_code = rng.choice(np.array(ERROR_CODES), nd)
    e_idx, e_valid = tl.local_to_index(err_when)
    for d in np.flatnonzero(err_day & e_valid).tolist():
        a = int(e_idx[d])
        codes[a : min(n, a + int(err_len[d]) * tl.steps(5))] = int(err_code[d])

    missing = np.zeros(n, dtype=bool)
    for c in changes_all:
        a = (c - tl.start_ms) // (dt * MS_PER_MINUTE)
        b = (c + WARMUP_MINUTES * MS_PER_MINUTE - tl.start_ms - 1) // (dt * MS_PER_MINUTE) + 1
        missing[max(0, a) : max(0, min(n, b))] = True
    loss_day = rng.random(nd) < 0.12
    loss_when = day_start + rng.uniform(0, MINUTES_PER_DAY, nd)
    loss_len = rng.uniform(10, 40, nd)
    l_idx, l_valid = tl.local_to_index(loss_when)
    for d in np.flatnonzero(loss_day & l_valid).tolist():
        a = int(l_idx[d])
        missing[a : min(n, a + tl.steps(float(loss_len[d])))] = True
    sensor[missing] = np.nan
    codes[missing] = 0

    site_changes = _periodic_ms(tl, _rng(base_seed, "sites"), SITE_CHANGE_DAYS, 240)
    sensor_changes = [c for c in changes_all if c >= tl.start_ms]
    return sensor, codes, noise_level, sensor_changes, site_changes
