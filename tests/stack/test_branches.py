"""Promoting one Nessie branch into another (`cascade promote`), on the stack's real Nessie."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pyarrow as pa
import pytest

from cascade.config import Profile, Settings
from cascade.exceptions import CascadeError, LakeError
from cascade.lake.branches import branch_hash, ensure_branches, promote
from cascade.lake.catalog import load_lake_catalog
from cascade.lake.nessie import EMPTY_BRANCH_HASH, NessieClient

pytestmark = [pytest.mark.stack, pytest.mark.integration]

ROWS = pa.table({"reading": pa.array([100, 180], pa.int64())})


@pytest.fixture
def branches(stack: Settings) -> Callable[..., tuple[Settings, Settings]]:
    """Two new branches: (settings on the source, settings on the target).

    By default both fork from a new base branch with one commit (a common ancestor, as `dev` and
    `main` have once the stack ran); `empty=True` makes both branches with no commit at all, as a
    new stack's `main` is.
    """
    api = f"{stack.stack.nessie_uri}/api/v2/trees"

    def branch(role: str, at: str) -> Settings:
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        created = httpx.post(
            api,
            params={"name": name, "type": "BRANCH"},
            json={"type": "BRANCH", "name": "main", "hash": at},
        )
        assert created.status_code == 200, created.text
        return stack.on_local_stack(name)

    def create(*, empty: bool = False) -> tuple[Settings, Settings]:
        fork = EMPTY_BRANCH_HASH
        if not empty:
            base = branch("base", EMPTY_BRANCH_HASH)
            _write(base, "scratch.base")
            fork = branch_hash(base, base.nessie.ref)
        return branch("source", fork), branch("target", fork)

    return create


def _write(settings: Settings, name: str = "scratch.readings") -> None:
    catalog = load_lake_catalog(settings)
    catalog.create_namespace_if_not_exists("scratch")
    table = catalog.create_table_if_not_exists(name, schema=ROWS.schema)
    table.append(ROWS)


def test_promote_merges_every_table_at_once_and_twice_is_a_no_op(
    branches: Callable[..., tuple[Settings, Settings]],
) -> None:
    source, target = branches()
    _write(source, "scratch.readings")
    _write(source, "scratch.events")

    promotion = promote(source, target=target.nessie.ref)

    assert promotion.applied
    assert promotion.target_hash == branch_hash(target, target.nessie.ref)
    assert set(promotion.tables) >= {"scratch.readings", "scratch.events"}
    on_target = load_lake_catalog(target).load_table("scratch.readings")
    on_source = load_lake_catalog(source).load_table("scratch.readings")
    assert on_target.metadata_location == on_source.metadata_location
    assert on_target.scan().to_arrow().num_rows == 2

    again = promote(source, target=target.nessie.ref)
    assert not again.applied and "nothing to merge" in again.summary()


def test_a_branch_without_commits_is_fast_forwarded(
    branches: Callable[..., tuple[Settings, Settings]],
) -> None:
    source, target = branches(empty=True)  # a new stack's main: Nessie cannot merge into it
    _write(source)

    promotion = promote(source, target=target.nessie.ref)

    assert promotion.applied and promotion.target_hash == promotion.source_hash
    assert "scratch.readings" in promotion.tables
    assert load_lake_catalog(target).load_table("scratch.readings").scan().to_arrow().num_rows == 2
    _write(source, "scratch.events")  # from now on, promote merges
    assert promote(source, target=target.nessie.ref).tables == ("scratch.events",)


def test_branches_without_a_common_ancestor_are_refused_clearly(
    branches: Callable[..., tuple[Settings, Settings]],
) -> None:
    source, target = branches(empty=True)
    _write(source)
    _write(target, "scratch.events")
    with pytest.raises(
        LakeError, match=r"Nothing was merged: .* was made before .* had any commit"
    ):
        promote(source, target=target.nessie.ref)


def test_a_conflict_merges_nothing_and_says_why(
    branches: Callable[..., tuple[Settings, Settings]],
) -> None:
    source, target = branches()
    _write(source)
    _write(target)  # the same table written on both sides
    before = branch_hash(target, target.nessie.ref)

    with pytest.raises(LakeError, match=r"\(409\).*scratch\.readings.*Nothing was merged"):
        promote(source, target=target.nessie.ref)

    assert branch_hash(target, target.nessie.ref) == before


def test_promote_refuses_what_cannot_work(
    branches: Callable[..., tuple[Settings, Settings]],
) -> None:
    source, target = branches()
    with pytest.raises(LakeError, match="no branch 'gone'"):
        promote(source, source="gone", target=target.nessie.ref)
    with pytest.raises(LakeError, match="nothing to promote"):
        promote(source, target=source.nessie.ref)
    local = source.with_values(**{"cascade_profile": Profile.LOCAL})
    with pytest.raises(LakeError, match=r"no branches.*CASCADE_PROFILE=lakehouse"):
        promote(local, target=target.nessie.ref)


def test_ensure_branches_creates_the_missing_ones_from_main_once(stack: Settings) -> None:
    names = [f"ensure-{uuid.uuid4().hex[:8]}", f"ensure-{uuid.uuid4().hex[:8]}/nested"]
    with NessieClient(stack.stack.nessie_uri) as nessie:
        main = nessie.branch_hash("main")
        assert ensure_branches(nessie, names) == names
        assert [nessie.branch_hash(name) for name in names] == [main, main]
        assert ensure_branches(nessie, [*names, "main"]) == []
        assert set(names) <= set(nessie.branches())


def test_a_name_nessie_would_refuse_is_refused_before_any_request(stack: Settings) -> None:
    with NessieClient(stack.stack.nessie_uri) as nessie:
        before = nessie.branches()
        for bad in ("1starts-with-a-digit", "two..dots", "ends/", "white space", "a?b=c"):
            with pytest.raises(CascadeError, match="not a valid Nessie branch name"):
                ensure_branches(nessie, [bad])
        assert nessie.branches() == before


def test_cascade_branch_create_and_list_on_the_real_nessie(
    stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cascade.cli.app import app
    from cascade.config import get_settings

    name = f"cli-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("NESSIE_URI", stack.stack.nessie_uri)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    try:
        created = CliRunner().invoke(app, ["branch", "create", name])
        again = CliRunner().invoke(app, ["branch", "create", name])
        listed = CliRunner().invoke(app, ["branch", "list"])
    finally:
        get_settings.cache_clear()
    assert created.exit_code == 0, created.output
    assert f"branch {name}: created from main" in created.output
    assert f"branch {name}: exists" in again.output
    with NessieClient(stack.stack.nessie_uri) as nessie:
        head = nessie.branch_hash(name)[:12]
    assert any(name in line and head in line for line in listed.output.splitlines())
    assert any("dev" in line and "iceberg_dev" in line for line in listed.output.splitlines())
