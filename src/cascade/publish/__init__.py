"""`cascade publish`: the lake's curated marts copied into PostgreSQL for BI (Superset).

    from cascade.publish import publish
    result = publish(settings)              # every marts.* table; or marts=["mrt_daily_summary"]
    print(result.summary())

Atomic for readers (staging + one swap transaction), idempotent (a published snapshot is skipped),
indexed on each mart's grain, readable by the BI role, with provenance in `<schema>._published`.
See docs/PUBLISH.md.
"""

from cascade.exceptions import PublishError
from cascade.publish.dsn import mask_dsn, resolve_dsn
from cascade.publish.publisher import MartPublish, PublishResult, publish

__all__ = ["MartPublish", "PublishError", "PublishResult", "mask_dsn", "publish", "resolve_dsn"]
