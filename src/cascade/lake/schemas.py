"""The raw layer's Iceberg schemas: typed columns for what analytics needs, plus the whole document.

Every raw table shares the same leading columns (site, stable id, event time, validity, server
times, ingestion metadata and the original JSON), then adds the typed fields of its collection.
Times are UTC `timestamptz`; the local offset travels alongside as `utc_offset_minutes`.
Tables are partitioned by day of event time, so a late record touches one partition.
"""

from __future__ import annotations

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DoubleType,
    IcebergType,
    IntegerType,
    ListType,
    NestedField,
    StringType,
    TimestamptzType,
)

RAW_NAMESPACE = "raw"
REJECTS_TABLE = "rejects"

# Table property holding a site's incremental cursor: `cascade.cursor.<site_id>` -> JSON.
CURSOR_PROPERTY_PREFIX = "cascade.cursor."

_COMMON: list[tuple[str, IcebergType, bool, str]] = [
    ("site_id", StringType(), True, "Nightscout site (one person) the record came from"),
    ("source_id", StringType(), True, "the source's stable id: v3 identifier, else v1 _id"),
    ("event_at", TimestamptzType(), True, "when the event happened, UTC"),
    ("utc_offset_minutes", IntegerType(), False, "the record's own local offset from UTC"),
    ("is_valid", BooleanType(), True, "false once the source deleted the record (v3 soft delete)"),
    ("srv_created_at", TimestamptzType(), False, "server time the record was created (v3)"),
    ("srv_modified_at", TimestamptzType(), False, "server time of the last change (v3)"),
    ("device", StringType(), False, "uploading device or app"),
    ("document", StringType(), True, "the full original document as JSON, nothing lost"),
]

_METADATA: list[tuple[str, IcebergType, bool, str]] = [
    ("_cascade_ingested_at", TimestamptzType(), True, "when Cascade wrote this version"),
    ("_cascade_load_id", StringType(), True, "the load that wrote this version"),
    ("_cascade_api", StringType(), True, "how it was read: v1, v3 (history) or stage"),
]

_SPECIFIC: dict[str, list[tuple[str, IcebergType, bool, str]]] = {
    "entries": [
        ("entry_type", StringType(), False, "sgv (sensor), mbg (meter), cal (calibration)"),
        (
            "sgv_mg_dl",
            IntegerType(),
            False,
            "sensor glucose; 39/401 are LOW/HIGH clamps, <39 error codes",
        ),
        ("mbg_mg_dl", DoubleType(), False, "meter blood glucose"),
        ("direction", StringType(), False, "trend arrow"),
        ("delta_mg_dl", DoubleType(), False, "change since the previous reading"),
        ("noise", IntegerType(), False, "sensor noise level"),
        ("date_string", StringType(), False, "dateString as sent, with its offset"),
    ],
    "treatments": [
        ("event_type", StringType(), False, "eventType: Meal Bolus, Temp Basal, Site Change..."),
        ("insulin_units", DoubleType(), False, "bolus insulin"),
        ("carbs_grams", DoubleType(), False, "carbohydrates"),
        ("rate_units_per_hour", DoubleType(), False, "temp basal rate"),
        ("absolute_units_per_hour", DoubleType(), False, "temp basal absolute rate"),
        ("percent", DoubleType(), False, "temp basal percent change"),
        ("duration_minutes", DoubleType(), False, "duration of temp basal, target or exercise"),
        ("glucose", DoubleType(), False, "BG check value, in glucose_units"),
        ("glucose_units", StringType(), False, "units of glucose"),
        ("target_top", DoubleType(), False, "temporary target top"),
        ("target_bottom", DoubleType(), False, "temporary target bottom"),
        ("is_smb", BooleanType(), False, "AndroidAPS super micro bolus"),
        ("profile_name", StringType(), False, "profile switched to"),
        ("entered_by", StringType(), False, "enteredBy"),
        ("notes", StringType(), False, "free text"),
    ],
    "devicestatus": [
        ("loop_system", StringType(), False, "loop (Loop/Trio) or openaps (OpenAPS/AndroidAPS)"),
        ("iob_units", DoubleType(), False, "insulin on board"),
        ("basal_iob_units", DoubleType(), False, "basal part of IOB (openaps)"),
        ("cob_grams", DoubleType(), False, "carbs on board"),
        ("eventual_bg_mg_dl", DoubleType(), False, "predicted eventual glucose"),
        (
            "predicted_mg_dl",
            ListType(0, DoubleType(), element_required=False),
            False,
            "prediction curve, 5-min steps",
        ),
        ("predicted_start_at", TimestamptzType(), False, "time of the first predicted value"),
        ("enacted_rate_units_per_hour", DoubleType(), False, "temp basal the loop enacted"),
        ("enacted_duration_minutes", DoubleType(), False, "duration of the enacted temp basal"),
        ("pump_reservoir_units", DoubleType(), False, "insulin left in the pump"),
        ("pump_battery_percent", DoubleType(), False, "pump battery"),
        ("uploader_battery_percent", DoubleType(), False, "phone/uploader battery"),
    ],
    "profile": [
        ("default_profile", StringType(), False, "name of the active profile in store"),
        ("units", StringType(), False, "mg/dl or mmol"),
        ("timezone", StringType(), False, "IANA timezone of the active profile"),
        ("dia_hours", DoubleType(), False, "duration of insulin action"),
        (
            "store",
            StringType(),
            False,
            "the profile store (basal, ISF, carb ratio, targets) as JSON",
        ),
    ],
}

REJECTS_COLUMNS: list[tuple[str, IcebergType, bool, str]] = [
    (
        "reject_id",
        StringType(),
        True,
        "hash of site, collection and document: re-loads add nothing",
    ),
    ("site_id", StringType(), True, "Nightscout site"),
    ("collection", StringType(), True, "collection the document came from"),
    ("source_id", StringType(), False, "the document's id, if it had one"),
    ("reason", StringType(), True, "why it was rejected"),
    ("document", StringType(), True, "the document exactly as received"),
    ("_cascade_ingested_at", TimestamptzType(), True, "when Cascade rejected it"),
    ("_cascade_load_id", StringType(), True, "the load that rejected it"),
]

RAW_COLLECTIONS = tuple(_SPECIFIC)


def _schema(columns: list[tuple[str, IcebergType, bool, str]]) -> Schema:
    fields = []
    next_id = 1
    for name, type_, required, doc in columns:
        if isinstance(type_, ListType):
            next_id += 1
            type_ = ListType(next_id, type_.element_type, element_required=False)
            fields.append(NestedField(next_id - 1, name, type_, required=required, doc=doc))
        else:
            fields.append(NestedField(next_id, name, type_, required=required, doc=doc))
        next_id += 1
    return Schema(*fields)


def raw_schema(collection: str) -> Schema:
    return _schema(_COMMON + _SPECIFIC[collection] + _METADATA)


def raw_partition_spec(schema: Schema) -> PartitionSpec:
    event_at = schema.find_field("event_at")
    return PartitionSpec(
        PartitionField(
            source_id=event_at.field_id, field_id=1000, transform=DayTransform(), name="event_day"
        )
    )


def raw_sort_order(schema: Schema) -> SortOrder:
    return SortOrder(
        SortField(source_id=schema.find_field("site_id").field_id, transform=IdentityTransform()),
        SortField(source_id=schema.find_field("event_at").field_id, transform=IdentityTransform()),
    )


def rejects_schema() -> Schema:
    return _schema(REJECTS_COLUMNS)
