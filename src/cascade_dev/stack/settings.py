"""What the local stack fixes for itself: the lake's bucket, and where the services' configuration is.

Every other setting of the stack is the `stack` section of Cascade's one settings model
(`cascade.config.StackSettings`), read from the same variables the shipped deployment reads.
"""

from __future__ import annotations

from pathlib import Path

from cascade.config import Settings

#: The one bucket of the lake, and the prefixes inside it. Fixed: deploy/config refers to them.
LAKE_BUCKET = "lake"
LAKE_PREFIXES = ("warehouse/", "stage/")

#: deploy/config of the repository, shipped with this package (a link in a checkout).
BUNDLED_SERVICE_CONFIG = Path(__file__).resolve().parent / "service_config"


def service_config_dir(settings: Settings) -> Path:
    """The services' shared configuration: CASCADE_DEPLOY_DIR/config, else the bundled one."""
    if settings.stack.deploy_dir is not None:
        return (settings.stack.deploy_dir / "config").expanduser().resolve()
    return BUNDLED_SERVICE_CONFIG
