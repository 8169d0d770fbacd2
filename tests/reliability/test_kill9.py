"""kill -9 at random points: dozens of ingest processes killed mid-run, then a run to completion.

Each trial starts from an empty home, so the kill can land anywhere: while the tables are being
created, between pages, in the middle of a commit, between the rejects' commit and the rows',
after the last commit. Some trials are killed twice (the resumed run is killed too). The run
that follows must exit 0 and leave the lake exactly as one undisturbed run leaves it; and the
stage, rebuilt into a fresh lake, must give the same again (the stage holds the source of every
row, whatever the kill interrupted).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cascade.config import Settings, load_settings
from cascade.lake.ingest import ingest
from cascade.lake.stage import Stage

from .harness import (
    INGEST_ENV,
    MODES,
    V1,
    Contents,
    Launcher,
    Mode,
    assert_same,
    assert_served_documents,
    lake_contents,
    rng,
    timeout,
    trials,
)

pytestmark = [pytest.mark.integration, timeout(600)]

#: Trials (each: an empty home, one or two kills, a final run); the modes take turns.
KILL_TRIALS = trials(30)
#: Share of the trials whose resumed run is killed again.
TWICE = 1 / 3
#: Kills are drawn uniformly from this share of an undisturbed run's duration.
KILL_WITHIN = 0.9
#: Trials whose stage is also rebuilt into a fresh lake and compared (every n-th).
REBUILD_EVERY = 3
DAYS = 1


@dataclass
class Reference:
    """A mode's fake site, read once by an undisturbed `cascade ingest`."""

    mode: Mode
    settings: Settings  # of the reference home; trials change only the home
    contents: Contents
    seconds: float  # the shorter of two undisturbed runs: kills land within KILL_WITHIN of it


@pytest.fixture(scope="module")
def references(
    processes: Launcher, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Reference]]:
    root = tmp_path_factory.mktemp("kill9")
    references = {}
    servers = []
    try:
        for index, mode in enumerate(MODES):
            ns = mode.server(subjects=1, days=DAYS, seed=90 + index).start()
            servers.append(ns)
            settings = load_settings(cascade_home=root, nightscout_sites=mode.sites(ns))
            seconds = []
            for attempt in range(2):  # the shorter of two runs: kills must land inside runs
                home = settings.with_values(**{"cascade_home": root / f"run-{index}-{attempt}"})
                started = time.monotonic()
                processes.wait(processes.ingest(home)).assert_clean()
                seconds.append(time.monotonic() - started)
            settings = home
            contents = lake_contents(settings)
            assert_served_documents(contents, ns, mode, DAYS, ns.site_ids)
            references[mode.name] = Reference(mode, settings, contents, min(seconds))
        yield references
    finally:
        for ns in servers:
            ns.stop()


def test_kill_minus_nine_at_random_points_then_resume_is_exact(
    processes: Launcher, references: dict[str, Reference], tmp_path: Path
) -> None:
    outcomes: Counter[str] = Counter()
    landed: Counter[int] = Counter()  # kills by how many commits the lake held when they hit
    rebuilt = 0
    started = time.monotonic()
    for trial in range(KILL_TRIALS):
        draw = rng("kill9", trial)
        reference = references[MODES[trial % len(MODES)].name]
        settings = reference.settings.with_values(
            **{"cascade_home": tmp_path / f"trial-{trial:03d}"}
        )
        kills = 2 if draw.random() < TWICE else 1
        where = []
        for _ in range(kills):
            run = processes.ingest(settings)
            time.sleep(draw.uniform(0, KILL_WITHIN * reference.seconds))
            processes.kill(run)
            if run.returncode == 0:
                where.append("after the run had finished")
            else:
                assert run.returncode == -9, (run.returncode, run.stderr[-2000:])
                committed = lake_contents(settings).snapshots
                landed[committed] += 1
                where.append(f"after {committed} of {reference.contents.snapshots}+ commits")
            outcomes["finished before the kill" if run.returncode == 0 else "killed"] += 1
        final = processes.wait(processes.ingest(settings))
        final.assert_clean()
        label = f"trial {trial} ({reference.mode.name}, killed {', then '.join(where)})"
        assert_same(lake_contents(settings), reference.contents, label)
        if trial % REBUILD_EVERY == 0:
            _assert_stage_rebuilds(settings, tmp_path / f"rebuild-{trial:03d}", reference, label)
            rebuilt += 1
    print(
        f"\nkill -9: {KILL_TRIALS} trials, {outcomes['killed']} processes killed mid-run, "
        f"{outcomes['finished before the kill']} finished before their kill, "
        f"{rebuilt} stages rebuilt; {time.monotonic() - started:.0f}s\n"
        f"kills by commits already in the lake: {dict(sorted(landed.items()))}"
    )
    # the draws must mostly land inside runs, or this test proves little
    assert outcomes["killed"] >= 0.75 * KILL_TRIALS, outcomes


def _assert_stage_rebuilds(
    settings: Settings, home: Path, reference: Reference, label: str
) -> None:
    """The trial's stage alone rebuilds the same lake (pages are landed before their commit)."""
    rebuild = settings.with_values(
        **{"cascade_home": home, "iceberg_staging_path": settings.lake.staging_path}
    )
    ingest(rebuild, from_stage=True)
    assert_same(lake_contents(rebuild), reference.contents, f"{label}, rebuilt from stage")


class _Killed(BaseException):
    """What a kill -9 in the middle of a write leaves: the process stops right there."""


class _HalfWrite:
    """An output stream that writes half of what it is given, then dies."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __enter__(self) -> _HalfWrite:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()  # the OS closes a killed process's files

    def write(self, data: bytes) -> None:
        self._stream.write(data[: len(data) // 2])
        raise _Killed


class _DyingFilesystem:
    """The stage's filesystem, but the process dies halfway through writing its `at`-th file."""

    def __init__(self, fs: Any, at: int) -> None:
        self._fs, self._at, self._written = fs, at, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def open_output_stream(self, path: str, *args: Any, **kwargs: Any) -> Any:
        self._written += 1
        stream = self._fs.open_output_stream(path, *args, **kwargs)
        return _HalfWrite(stream) if self._written == self._at else stream


def test_a_page_cut_short_by_a_kill_leaves_a_stage_that_still_rebuilds(
    references: dict[str, Reference], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill trials rarely land inside a page's write (it takes microseconds): this one does."""
    reference = references[V1.name]
    settings = reference.settings.with_values(
        **{
            "cascade_home": tmp_path / "killed",
            "nightscout_page_size": int(INGEST_ENV["NIGHTSCOUT_PAGE_SIZE"]),
            "ingest_commit_rows": int(INGEST_ENV["INGEST_COMMIT_ROWS"]),
        }
    )
    real = Stage.for_settings

    def dying(cls: type[Stage], settings: Settings) -> Stage:
        stage = real(settings)
        stage.fs = _DyingFilesystem(stage.fs, at=3)  # type: ignore[assignment]
        return stage

    monkeypatch.setattr(Stage, "for_settings", classmethod(dying))
    with pytest.raises(_Killed):
        ingest(settings)
    monkeypatch.undo()
    ingest(settings)  # the next run completes the load
    assert_same(lake_contents(settings), reference.contents, "after a kill mid-page")
    _assert_stage_rebuilds(settings, tmp_path / "rebuilt", reference, "after a kill mid-page")
