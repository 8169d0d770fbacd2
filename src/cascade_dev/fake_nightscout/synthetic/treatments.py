"""Treatment documents: boluses, carbs, temp basals, site and sensor changes, notes."""

from __future__ import annotations

from typing import Any

import numpy as np

from cascade_dev.fake_nightscout.synthetic.clock import _iso_utc, _one_iso_utc, _Timeline, _Trip
from cascade_dev.fake_nightscout.synthetic.loop import TEMP_DURATION_MIN, _Loop, _site_changes
from cascade_dev.fake_nightscout.synthetic.people import (
    MINUTES_PER_DAY,
    MS_PER_MINUTE,
    Doc,
    SubjectSpec,
    _rng,
)
from cascade_dev.fake_nightscout.synthetic.physiology import _Sim
from cascade_dev.fake_nightscout.synthetic.profiles import _ProfilePlan

# --------------------------------------------------------------------------- treatments


class _Treatments:
    """Collects treatments as uploaders shape them, kept in upload (time) order."""

    def __init__(self, spec: SubjectSpec, tl: _Timeline, rng: np.random.Generator) -> None:
        self.spec = spec
        self.tl = tl
        self.rng = rng
        self.items: list[tuple[int, Doc]] = []
        self.next_pump_id = 4_100_000 + int(rng.integers(0, 900_000))

    def at_index(self, index: int) -> int:
        """An instant inside the grid step (people do not bolus on the 5-minute tick)."""
        jitter = int(self.rng.integers(0, self.tl.step_min * 60)) * 1000
        return int(self.tl.t_ms[index]) + jitter

    def add(
        self,
        ms: int,
        event_type: str,
        fields: Doc,
        *,
        pump: bool = False,
        created_at: str | None = None,
        offset: int | None = None,
    ) -> Doc:
        doc: Doc = {
            "eventType": event_type,
            "created_at": created_at if created_at is not None else _one_iso_utc(ms),
            "enteredBy": self.spec.entered_by,
            "utcOffset": offset if offset is not None else self.tl.offsets.at_one(ms),
        }
        doc.update(fields)
        if self.spec.uploader == "aaps":
            doc["date"] = ms
            if pump:
                doc["pumpId"] = self.next_pump_id
                doc["pumpType"] = "DANA_I"
                doc["pumpSerial"] = "VCX12345AB"
                self.next_pump_id += 1
        self.items.append((ms, doc))
        return doc

    def bolus(
        self, ms: int, event_type: str, units: float, *, smb: bool = False, **fields: Any
    ) -> Doc:
        body: Doc = {"insulin": round(units, 2), **fields}
        if self.spec.uploader == "aaps":
            body["isSMB"] = smb
            body["type"] = "SMB" if smb else "NORMAL"
        elif smb:
            body["automatic"] = True
        return self.add(ms, event_type, body, pump=True)

    def sorted_docs(self) -> list[tuple[int, Doc]]:
        return sorted(self.items, key=lambda item: item[0])


def _treatments(
    spec: SubjectSpec,
    tl: _Timeline,
    sim: _Sim,
    lp: _Loop,
    plans: list[_ProfilePlan],
    trip: _Trip | None,
    base_seed: int,
) -> tuple[list[tuple[int, Doc]], Doc]:
    """All treatments, plus the marker correction bolus (dirty data changes its type)."""
    rng = _rng(base_seed, "treatments")
    out = _Treatments(spec, tl, rng)
    loop = spec.uploader == "loop"
    marker: Doc = {}

    for b in sim.events.boluses:
        ms = out.at_index(b.index)
        if b.kind == "meal":
            extra: Doc = {"absorptionTime": b.absorption_min} if loop else {}
            out.bolus(ms, "Meal Bolus", b.units, carbs=round(b.carbs), **extra)
        elif b.kind == "marker":
            marker = out.bolus(ms, "Correction Bolus", b.units)
        else:
            out.bolus(ms, "Correction Bolus", b.units)
    for index, grams in sim.events.rescues:
        extra = {"absorptionTime": 30} if loop else {}
        out.add(out.at_index(index), "Carb Correction", {"carbs": round(grams), **extra})
    for index, text in sim.events.notes:
        out.add(out.at_index(index), "Note", {"notes": text})
    for index, duration, target in sim.events.exercises:
        if target <= 0:
            continue
        start = max(0, index - tl.steps(45))
        out.add(
            out.at_index(start),
            "Temporary Target",
            {
                "targetTop": target,
                "targetBottom": target,
                "duration": duration + 45,
                "reason": "Activity",
                "units": "mg/dl",
            },
        )

    for ms, failed in _site_changes(tl, sim):
        if ms < tl.end_ms:
            out.add(
                ms,
                "Site Change",
                {"notes": "kinked cannula, glucose would not come down"} if failed else {},
            )
    for ms in sim.sensor_changes_ms:
        out.add(ms, "Sensor Change", {})
        out.add(ms + 1000, "Sensor Start", {})

    if trip is not None:
        out.add(trip.start_ms, "Note", {"notes": f"travelling to {trip.timezone}"})
        out.add(trip.end_ms, "Note", {"notes": f"back home in {spec.timezone}"})
    if not loop:
        for plan in plans:
            out.add(
                plan.start_ms + 1000,
                "Profile Switch",
                {"profile": "Default", "duration": 0, "percentage": 100, "timeshift": 0},
            )
        days = tl.local_days()
        switch = rng.random(len(days)) < 0.05
        pct = rng.choice([80, 90, 110, 120], len(days))
        hours = rng.choice([2, 4, 8, 12], len(days))
        idx, valid = tl.local_to_index(
            days * MINUTES_PER_DAY + rng.uniform(8 * 60, 20 * 60, len(days))
        )
        for d in np.flatnonzero(switch & valid).tolist():
            out.add(
                out.at_index(int(idx[d])),
                "Profile Switch",
                {
                    "profile": "Default",
                    "duration": int(hours[d]) * 60,
                    "percentage": int(pct[d]),
                    "timeshift": 0,
                },
            )

    created = _iso_utc(lp.ms)
    offsets = lp.offset_min.tolist()
    rates = lp.rate.round(2).tolist()
    autos = lp.auto_bolus.round(2).tolist()
    temp_fields: Doc = {"duration": TEMP_DURATION_MIN, "temp": "absolute"}
    if not loop:
        temp_fields = {
            "duration": TEMP_DURATION_MIN,
            "durationInMilliseconds": TEMP_DURATION_MIN * MS_PER_MINUTE,
            "type": "NORMAL",
        }
    for c in np.flatnonzero(lp.wrote_temp | (lp.auto_bolus > 0)).tolist():
        ms = int(lp.ms[c])
        if lp.wrote_temp[c]:
            out.add(
                ms,
                "Temp Basal",
                {"rate": rates[c], "absolute": rates[c], **temp_fields},
                pump=True,
                created_at=created[c],
                offset=offsets[c],
            )
        if autos[c] > 0:
            body: Doc = {"insulin": autos[c]}
            if loop:
                body["automatic"] = True
            else:
                body.update(isSMB=True, type="SMB")
            out.add(ms + 2000, "Correction Bolus", body, pump=True, offset=offsets[c])
    return out.sorted_docs(), marker
