"""Documents shaped the way uploaders send them, tagged with a test's marker."""

from __future__ import annotations

from typing import Any

from nightscout_api import Day, iso


def entry(day: Day, hours: float, *, sgv: int = 120) -> dict[str, Any]:
    """An xDrip+-style CGM reading."""
    ms = day.ms(hours)
    return {
        "type": "sgv",
        "sgv": sgv,
        "direction": "Flat",
        "date": ms,
        "dateString": iso(ms),
        "device": day.marker,
    }


def entry_at(ms: int, marker: str) -> dict[str, Any]:
    return {"type": "sgv", "sgv": 111, "date": ms, "dateString": iso(ms), "device": marker}


def treatment(day: Day, hours: float, **extra: Any) -> dict[str, Any]:
    """A careportal note (`notes` carries the marker)."""
    return {
        "eventType": "Note",
        "created_at": day.iso(hours),
        "notes": day.marker,
        "enteredBy": "cascade-contract",
        **extra,
    }


def treatment_at(ms: int, marker: str) -> dict[str, Any]:
    return {"eventType": "Note", "created_at": iso(ms), "notes": marker, "enteredBy": marker}


def devicestatus(day: Day, hours: float) -> dict[str, Any]:
    """A minimal uploader status (`device` carries the marker)."""
    return {"device": day.marker, "created_at": day.iso(hours), "uploaderBattery": 55}


def profile(day: Day, hours: float) -> dict[str, Any]:
    """A profile starting at the given hour (`enteredBy` carries the marker)."""
    schedule = [{"time": "00:00", "timeAsSeconds": 0, "value": 1.0}]
    return {
        "defaultProfile": "Default",
        "startDate": day.iso(hours),
        "enteredBy": day.marker,
        "units": "mg/dl",
        "store": {
            "Default": {
                "dia": 5,
                "carbratio": schedule,
                "sens": schedule,
                "basal": schedule,
                "target_low": schedule,
                "target_high": schedule,
                "timezone": "UTC",
                "units": "mg/dl",
            }
        },
    }


def make(collection: str, day: Day, hours: float) -> dict[str, Any]:
    if collection == "entries":
        return entry(day, hours)
    if collection == "treatments":
        return treatment(day, hours)
    if collection == "devicestatus":
        return devicestatus(day, hours)
    return profile(day, hours)


def day_query(collection: str, day: Day, **extra: Any) -> tuple[str, dict[str, Any]]:
    """The v1 path and params that find a test's documents of a collection in its day."""
    if collection == "entries":
        params = {
            "find[date][$gte]": day.start_ms,
            "find[date][$lt]": day.end_ms,
            "find[device]": day.marker,
        }
    elif collection == "treatments":
        params = {
            "find[created_at][$gte]": day.iso(0),
            "find[created_at][$lt]": day.iso(24),
            "find[notes]": day.marker,
        }
    elif collection == "devicestatus":
        params = {
            "find[created_at][$gte]": day.iso(0),
            "find[created_at][$lt]": day.iso(24),
            "find[device]": day.marker,
        }
    else:
        params = {
            "find[startDate][$gte]": day.iso(0),
            "find[startDate][$lt]": day.iso(24),
            "find[enteredBy]": day.marker,
        }
        collection = "profiles"
    return f"/api/v1/{collection}.json", {**params, **extra}
