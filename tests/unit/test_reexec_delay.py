"""The delay before the operator re-executes itself in place (`ovnvnet.__main__._reexec_delay`):
1 s, doubling while re-executions follow each other within a minute, capped at 30 s, reset by a
minute of running. The count is kept in the environment, which `os.execv` passes on."""
from __future__ import annotations

import pytest

from ovnvnet.__main__ import _reexec_delay
from ovnvnet.config import REEXEC_ENV


def test_doubles_while_repeating_and_resets_after_a_quiet_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REEXEC_ENV, raising=False)
    t = 1_000_000.0
    delays = []
    for _ in range(7):
        delays.append(_reexec_delay(t))
        t += 5
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert _reexec_delay(t + 61) == 1, "a minute without a re-execution resets the backoff"


def test_a_garbled_count_counts_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REEXEC_ENV, "x:y")
    assert _reexec_delay(5.0) == 1
    assert _reexec_delay(6.0) == 2
