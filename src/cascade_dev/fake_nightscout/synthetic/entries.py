"""CGM and meter entries from the simulated glucose, with trend arrows and uploader devices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cascade_dev.fake_nightscout.synthetic.clock import _iso_local, _one_iso_local, _Timeline
from cascade_dev.fake_nightscout.synthetic.people import (
    MINUTES_PER_DAY,
    MS_PER_MINUTE,
    WARMUP_MINUTES,
    BoolArray,
    Doc,
    IntArray,
    SubjectSpec,
    _rng,
)
from cascade_dev.fake_nightscout.synthetic.physiology import _Sim

# --------------------------------------------------------------------------- entries

DIRECTIONS = (
    "DoubleUp",
    "SingleUp",
    "FortyFiveUp",
    "Flat",
    "FortyFiveDown",
    "SingleDown",
    "DoubleDown",
)
NOT_COMPUTABLE = "NOT COMPUTABLE"
_SHARE_TREND = {name: i + 1 for i, name in enumerate(DIRECTIONS)} | {NOT_COMPUTABLE: 8}


def _cgm_device(spec: SubjectSpec, interval_minutes: int) -> str:
    """Libre 3 (1-min) arrives through xDrip+; Dexcom through Share or xDrip+."""
    return "xDrip-LibreReceiver" if interval_minutes == 1 else spec.cgm_device


def _second_uploader(device: str) -> str:
    return "xDrip-DexcomG6" if device == "share2" else "share2"


@dataclass
class _EntryTable:
    """The sgv readings as columns (grid order), for documents and dirty picks."""

    index: IntArray
    value: IntArray
    is_code: BoolArray
    docs: list[Doc]


def _sgv_entries(tl: _Timeline, sim: _Sim, device: str, base_seed: int) -> _EntryTable:
    n = tl.n
    present = ~np.isnan(sim.sensor)
    value = np.where(sim.error_code > 0, sim.error_code, np.nan_to_num(sim.sensor)).astype(np.int64)
    code = sim.error_code > 0
    lag = tl.steps(5)
    prev_ok = np.zeros(n, dtype=bool)
    prev_ok[lag:] = present[:-lag] & ~code[:-lag]
    prev_val = np.zeros(n, dtype=np.int64)
    prev_val[lag:] = value[:-lag]
    computable = present & ~code & prev_ok
    computable &= _rng(base_seed, "directions").random(n) >= 0.002
    delta = (value - prev_val).astype(np.float64)
    slope = delta / 5.0
    direction = np.select(
        [slope > 3, slope > 2, slope > 1, slope >= -1, slope >= -2, slope >= -3],
        list(DIRECTIONS[:6]),
        DIRECTIONS[6],
    ).astype(object)
    direction[~computable] = NOT_COMPUTABLE

    idx = np.flatnonzero(present)
    ms = tl.t_ms[idx]
    offsets = tl.offset_min[idx]
    date_strings = _iso_local(ms, offsets)
    share = device == "share2"
    docs: list[Doc] = []
    for when, text, off, val, dirn, ok, dlt, noise in zip(
        ms.tolist(),
        date_strings,
        offsets.tolist(),
        value[idx].tolist(),
        direction[idx].tolist(),
        computable[idx].tolist(),
        delta[idx].tolist(),
        sim.noise_level[idx].tolist(),
        strict=True,
    ):
        doc: Doc = {
            "type": "sgv",
            "sgv": val,
            "date": when,
            "dateString": text,
            "utcOffset": off,
            "direction": dirn,
            "device": device,
            "noise": noise,
        }
        if ok:
            doc["delta"] = dlt
        if share:
            doc["trend"] = _SHARE_TREND[dirn]
        docs.append(doc)
    return _EntryTable(idx, value[idx], code[idx], docs)


def _meter_entries(tl: _Timeline, sim: _Sim, device: str, base_seed: int) -> list[tuple[int, Doc]]:
    """Finger sticks (~3 a week) and one calibration record per sensor session."""
    rng = _rng(base_seed, "meter")
    days = tl.local_days()
    nd = len(days)
    # three finger sticks a week, spread evenly (a Bernoulli draw per day is too lumpy)
    stick = (np.arange(nd) * 3 / 7 + rng.uniform()) % 1 < 3 / 7
    when = days * MINUTES_PER_DAY + rng.uniform(7 * 60, 22 * 60, nd)
    error = rng.lognormal(0, 0.05, nd)
    idx, valid = tl.local_to_index(when)
    out: list[tuple[int, Doc]] = []
    for d in np.flatnonzero(stick & valid).tolist():
        i = int(idx[d])
        ms = int(tl.t_ms[i]) + int(rng.integers(0, tl.step_min * 60)) * 1000
        off = tl.offsets.at_one(ms)
        mbg = int(np.clip(round(sim.true_glucose[i] * error[d]), 20, 600))
        out.append(
            (
                ms,
                {
                    "type": "mbg",
                    "mbg": mbg,
                    "date": ms,
                    "dateString": _one_iso_local(ms, off),
                    "utcOffset": off,
                    "device": "xDrip-BluetoothMeter" if device.startswith("xDrip") else device,
                },
            )
        )
    for change in sim.sensor_changes_ms:
        ms = change + (WARMUP_MINUTES + 7) * MS_PER_MINUTE
        if ms >= tl.end_ms:
            continue
        off = tl.offsets.at_one(ms)
        out.append(
            (
                ms,
                {
                    "type": "cal",
                    "date": ms,
                    "dateString": _one_iso_local(ms, off),
                    "utcOffset": off,
                    "device": device,
                    "slope": round(float(rng.uniform(800, 1000)), 2),
                    "intercept": round(float(rng.uniform(25000, 35000)), 2),
                    "scale": 1,
                },
            )
        )
    return out
