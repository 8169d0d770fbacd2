"""Faults injected on purpose: slow answers, 429/5xx, dropped and truncated connections, bad JSON."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

from cascade_dev.fake_nightscout.protocol import FAULT_KINDS, _FaultRule

# --------------------------------------------------------------------------- faults


class _Faults:
    """Faults to inject: counted rules first (in order), then random ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_FaultRule] = []
        self._rate = 0.0
        self._kinds: tuple[str, ...] = ()
        self._random = random.Random(0)
        self._random_delay = 0.5

    def add(self, kind: str, times: int, path_contains: str | None, delay_seconds: float) -> None:
        _check_kind(kind)
        with self._lock:
            self._rules.append(_FaultRule(kind, times, path_contains, delay_seconds))

    def set_random(
        self, rate: float, kinds: Sequence[str], seed: int, delay_seconds: float
    ) -> None:
        for kind in kinds:
            _check_kind(kind)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be between 0 and 1")
        with self._lock:
            self._rate = rate if kinds else 0.0
            self._kinds = tuple(kinds)
            self._random = random.Random(seed)
            self._random_delay = delay_seconds

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._rate = 0.0

    def pending(self) -> int:
        with self._lock:
            return sum(rule.times for rule in self._rules)

    def pick(self, target: str) -> tuple[str, float] | None:
        """The fault for a request to `target` (path and query), consuming one use."""
        with self._lock:
            for rule in self._rules:
                if rule.times > 0 and (rule.path_contains is None or rule.path_contains in target):
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                    return rule.kind, rule.delay_seconds
            if self._rate and self._random.random() < self._rate:
                return self._random.choice(self._kinds), self._random_delay
        return None


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; choose from {', '.join(FAULT_KINDS)}")
