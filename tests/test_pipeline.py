"""`run_pipeline`'s promote option refuses before doing any work when there is nothing to promote."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.config import load_settings
from cascade.exceptions import LakeError
from cascade.pipeline import run_pipeline


@pytest.mark.parametrize(
    ("profile", "ref", "reason"),
    [("local", "main", "has no branches"), ("lakehouse", "main", "nothing to promote")],
)
def test_promote_is_refused_before_any_ingest(
    tmp_path: Path, profile: str, ref: str, reason: str
) -> None:
    # The site does not exist: had the pipeline started, the ingest would fail differently.
    settings = load_settings(
        cascade_profile=profile,
        cascade_home=tmp_path,
        nessie_ref=ref,
        nightscout_url="http://127.0.0.1:9/",
    )
    with pytest.raises(LakeError, match=reason):
        run_pipeline(settings, promote_to_main=True)
    assert list(tmp_path.iterdir()) == []
