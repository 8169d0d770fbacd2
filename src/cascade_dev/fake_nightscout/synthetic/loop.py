"""The closed loop (Loop or AAPS): temp basals, site changes and device status documents."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cascade_dev.fake_nightscout.synthetic.clock import _iso_utc, _Timeline
from cascade_dev.fake_nightscout.synthetic.people import (
    AAPS_DEVICE,
    LOOP_CYCLE_MINUTES,
    LOOP_ENTERED_BY,
    MINUTES_PER_DAY,
    MS_PER_DAY,
    MS_PER_MINUTE,
    BoolArray,
    Doc,
    FloatArray,
    IntArray,
    SubjectSpec,
    _rng,
)
from cascade_dev.fake_nightscout.synthetic.physiology import (
    _fft_convolve,
    _insulin_curves,
    _kernels,
    _Sim,
)
from cascade_dev.fake_nightscout.synthetic.profiles import BASAL_SHAPE, _hourly, _ProfilePlan

# --------------------------------------------------------------------------- closed loop

TEMP_DURATION_MIN = 30


@dataclass
class _Loop:
    """Per 5-minute loop cycle: what the controller saw, decided and reported."""

    grid_index: IntArray
    ms: IntArray
    offset_min: IntArray
    bg: FloatArray  # NaN when there is no usable reading
    delta: FloatArray
    iob: FloatArray
    basal_iob: FloatArray
    cob: FloatArray
    eventual: FloatArray
    scheduled: FloatArray
    rate: FloatArray  # basal rate in effect
    wrote_temp: BoolArray
    auto_bolus: FloatArray
    reservoir: FloatArray
    pump_battery: IntArray
    phone_battery: IntArray


def _site_changes(tl: _Timeline, sim: _Sim) -> list[tuple[int, bool]]:
    """Scheduled site changes plus an unscheduled one ending every site failure."""
    out = [(ms, False) for ms in sim.site_changes_ms if ms >= tl.start_ms]
    out += [(int(tl.t_ms[b]) + 3 * MS_PER_MINUTE, True) for _, b in sim.events.failures]
    return sorted(out)


def _run_loop(
    spec: SubjectSpec, tl: _Timeline, sim: _Sim, plans: list[_ProfilePlan], base_seed: int
) -> _Loop:
    rng = _rng(base_seed, "loop")
    ci = np.flatnonzero(tl.t_ms % (LOOP_CYCLE_MINUTES * MS_PER_MINUTE) == 0)
    nc = len(ci)
    phase_s = int(rng.integers(5, 50))
    ms = tl.t_ms[ci] + phase_s * 1000
    isf, csf, target = spec.isf_mg_dl_per_u, spec.carb_sensitivity, spec.target_mg_dl

    bg = np.where(sim.error_code[ci] > 0, np.nan, sim.sensor[ci])
    delta = np.full(nc, np.nan)
    delta[1:] = bg[1:] - bg[:-1]
    trend = np.nan_to_num(delta)

    kern = _kernels(tl.step_min)
    iob_bolus = _fft_convolve(sim.insulin_units, kern.iob_grid)[ci]
    cob = np.maximum(_fft_convolve(sim.announced_carbs, kern.cob_grid)[ci], 0.0)

    hour = (tl.local_min[ci] % MINUTES_PER_DAY) // 60
    starts = np.array([p.start_ms for p in plans], dtype=np.int64)
    which = np.clip(np.searchsorted(starts, ms, side="right") - 1, 0, len(plans) - 1)
    basal_scale = np.array([p.basal_scale for p in plans])[which]
    scheduled = spec.basal_u_per_h * _hourly(BASAL_SHAPE)[hour] * basal_scale

    # Automatic boluses (Loop) / SMBs (AAPS) on a predicted rise, counting the
    # insulin the earlier ones still have on board.
    t5 = np.arange(72, dtype=np.float64) * LOOP_CYCLE_MINUTES
    iob5 = _insulin_curves(t5)[1]
    eventual_pre = bg + 3 * trend - iob_bolus * isf + cob * csf
    ratio, cap, quantum, spacing = (
        (0.3, 1.5, 0.05, 2) if spec.uploader == "loop" else (0.25, 1.0, 0.1, 1)
    )
    candidate = (bg > target + 60) & (eventual_pre > target + 80) & (trend > -3)
    auto = np.zeros(nc)
    max_auto_iob = 2.5 * spec.basal_u_per_h  # the user's max IOB setting caps automation
    recent: list[tuple[int, float]] = []
    for c in np.flatnonzero(candidate).tolist():
        recent = [(j, u) for j, u in recent if c - j < len(iob5)]
        if recent and c - recent[-1][0] < spacing:
            continue
        auto_iob = sum(u * float(iob5[c - j]) for j, u in recent)
        if auto_iob > max_auto_iob:
            continue
        need = (float(eventual_pre[c]) - auto_iob * isf - target) / isf
        units = round(min(cap, max(0.0, need * ratio)) / quantum) * quantum
        if units >= quantum and need * isf > 80:
            auto[c] = units
            recent.append((c, units))
    iob_all = iob_bolus + _fft_convolve(auto, iob5)

    eventual = np.clip(bg + 3 * trend - iob_all * isf + cob * csf, 39, 400)
    desired = scheduled + 0.5 * (eventual - target) / isf
    suspend = ((bg < 80) & (trend < 0)) | (eventual < target - 25)
    desired = np.where(suspend, 0.0, np.clip(desired, 0.0, 4 * scheduled))
    desired = np.round(desired * 20) / 20

    # Temp basals: a new one when the recommendation moves, or to renew one about to expire.
    rate = np.empty(nc)
    wrote = np.zeros(nc, dtype=bool)
    usable = ~np.isnan(bg)
    current = float(scheduled[0]) if nc else 0.0
    until = -1
    for c in range(nc):
        now = int(ms[c])
        if now >= until:
            current = float(scheduled[c])
        if usable[c]:
            d = float(desired[c])
            if now >= until - 6 * MS_PER_MINUTE or abs(d - current) >= max(
                0.1, 0.15 * float(scheduled[c])
            ):
                current = d
                until = now + TEMP_DURATION_MIN * MS_PER_MINUTE
                wrote[c] = True
        rate[c] = current
    basal_iob = _fft_convolve((rate - scheduled) * LOOP_CYCLE_MINUTES / 60, iob5)

    # Reservoir: filled at each site change, drained by basal and boluses.
    bolus_per_cycle = np.bincount(
        np.clip(
            np.searchsorted(ci, np.flatnonzero(sim.insulin_units > 0), side="right") - 1,
            0,
            max(nc - 1, 0),
        ),
        weights=sim.insulin_units[sim.insulin_units > 0],
        minlength=nc,
    )[:nc]
    delivered = rate * LOOP_CYCLE_MINUTES / 60 + bolus_per_cycle + auto
    before = np.cumsum(delivered) - delivered
    change_ms = np.array([c for c, _ in _site_changes(tl, sim)], dtype=np.int64)
    segment = np.searchsorted(change_ms, ms, side="right")
    first_cycle = np.searchsorted(ms, change_ms, side="left")
    # People fill for about five days of their usual total daily dose.
    fill = float(np.clip(np.ceil(spec.basal_u_per_h * 24 / 0.45 * 5 / 10) * 10, 150, 300))
    base = np.concatenate(([-fill * 0.4], before[np.minimum(first_cycle, max(nc - 1, 0))]))
    reservoir = np.asarray(
        np.round(np.clip(fill - (before - base[segment]), 0, None), 1), dtype=np.float64
    )

    days_in = (ms - tl.start_ms) / MS_PER_DAY + float(rng.uniform(0, 30))
    pump_battery = (100 - (days_in % 30) * 2.7).astype(np.int64)
    local_hours = (tl.local_min[ci] % MINUTES_PER_DAY) / 60.0
    awake = (local_hours - 7.0) % 24.0
    phone = np.where(awake < 16.0, 100 - awake * 4.2, 33 + (awake - 16.0) * 9)
    phone_battery = np.clip(phone + rng.normal(0, 2, nc), 5, 100).astype(np.int64)

    return _Loop(
        ci,
        ms,
        tl.offset_min[ci],
        bg,
        delta,
        iob_all + basal_iob,
        basal_iob,
        cob,
        eventual,
        scheduled,
        rate,
        wrote,
        auto,
        reservoir,
        pump_battery,
        phone_battery,
    )


def _predictions(lp: _Loop, steps: int, towards: FloatArray) -> IntArray:
    """Short forecast curves from the current reading towards an eventual value."""
    s = np.arange(steps, dtype=np.float64)
    bg = np.nan_to_num(lp.bg)[:, None]
    trend = np.nan_to_num(lp.delta)[:, None]
    curve = bg + trend * np.minimum(s, 3) * 0.8 + (towards[:, None] - bg) * (1 - np.exp(-s / 12))
    return np.asarray(np.rint(np.clip(curve, 39, 400)), dtype=np.int64)


def _devicestatus(spec: SubjectSpec, lp: _Loop) -> list[Doc]:
    created = _iso_utc(lp.ms)
    common = zip(
        created,
        lp.offset_min.tolist(),
        (~np.isnan(lp.bg)).tolist(),
        np.nan_to_num(lp.bg).astype(np.int64).tolist(),
        np.round(lp.iob, 2).tolist(),
        np.round(lp.basal_iob, 2).tolist(),
        np.round(lp.cob, 1).tolist(),
        np.rint(np.nan_to_num(lp.eventual)).astype(np.int64).tolist(),
        lp.rate.round(2).tolist(),
        lp.wrote_temp.tolist(),
        lp.auto_bolus.round(2).tolist(),
        lp.reservoir.tolist(),
        lp.pump_battery.tolist(),
        lp.phone_battery.tolist(),
        strict=True,
    )
    docs: list[Doc] = []
    if spec.uploader == "loop":
        predicted = _predictions(lp, 24, np.nan_to_num(lp.eventual)).tolist()
        for c, (
            ts,
            off,
            ok,
            _bg,
            iob,
            _biob,
            cob,
            _ev,
            rate,
            wrote,
            bolus,
            res,
            pbat,
            ubat,
        ) in enumerate(common):
            loop: Doc = {
                "name": "Loop",
                "version": "3.4.4",
                "timestamp": ts,
                "iob": {"iob": iob, "timestamp": ts},
                "cob": {"cob": cob, "timestamp": ts},
            }
            if ok:
                loop["predicted"] = {"startDate": ts, "values": predicted[c]}
                loop["recommendedBolus"] = 0.0
            if wrote:
                loop["enacted"] = {
                    "rate": rate,
                    "duration": TEMP_DURATION_MIN,
                    "timestamp": ts,
                    "received": True,
                    "bolusVolume": bolus,
                }
            docs.append(
                {
                    "device": LOOP_ENTERED_BY,
                    "created_at": ts,
                    "utcOffset": off,
                    "loop": loop,
                    "pump": {
                        "clock": ts,
                        "reservoir": res,
                        "battery": {"percent": pbat},
                        "manufacturer": "Insulet",
                        "model": "Dash",
                        "suspended": False,
                        "bolusing": False,
                    },
                    "uploader": {"name": "iPhone", "timestamp": ts, "battery": ubat},
                }
            )
        return docs

    eventual_iob = np.clip(
        np.nan_to_num(lp.bg) + 3 * np.nan_to_num(lp.delta) - lp.iob * spec.isf_mg_dl_per_u, 39, 400
    )
    pred_iob = _predictions(lp, 24, eventual_iob).tolist()
    pred_cob = _predictions(lp, 24, np.nan_to_num(lp.eventual)).tolist()
    pred_zt = _predictions(lp, 12, eventual_iob + lp.scheduled * spec.isf_mg_dl_per_u).tolist()
    for c, (ts, off, ok, bg, iob, biob, cob, ev, rate, wrote, bolus, res, pbat, ubat) in enumerate(
        common
    ):
        openaps: Doc = {
            "iob": {"iob": iob, "basaliob": biob, "activity": round(iob * 0.012, 4), "time": ts}
        }
        if ok:
            pred: Doc = {"IOB": pred_iob[c], "ZT": pred_zt[c]}
            if cob > 0.5:
                pred["COB"] = pred_cob[c]
            openaps["suggested"] = {
                "temp": "absolute",
                "bg": bg,
                "tick": f"{int(lp.delta[c]):+d}" if not math.isnan(lp.delta[c]) else "",
                "eventualBG": ev,
                "targetBG": int(spec.target_mg_dl),
                "COB": cob,
                "IOB": iob,
                "rate": rate,
                "duration": TEMP_DURATION_MIN,
                "units": bolus,
                "reason": f"COB: {cob:g}, Dev: {int(ev - bg)}, BGI: {-round(iob, 1):g}, ISF: {int(spec.isf_mg_dl_per_u)}",
                "predBGs": pred,
                "timestamp": ts,
                "deliverAt": ts,
            }
        else:
            openaps["suggested"] = {"reason": "CGM data is unchanged or too old", "timestamp": ts}
        if wrote:
            openaps["enacted"] = {
                "temp": "absolute",
                "rate": rate,
                "duration": TEMP_DURATION_MIN,
                "smb": bolus,
                "timestamp": ts,
                "received": True,
            }
        docs.append(
            {
                "device": AAPS_DEVICE,
                "created_at": ts,
                "utcOffset": off,
                "openaps": openaps,
                "pump": {
                    "clock": ts,
                    "reservoir": res,
                    "battery": {"percent": pbat},
                    "status": {"status": "normal", "timestamp": ts},
                },
                "uploaderBattery": ubat,
                "isCharging": ubat > 95,
            }
        )
    return docs
