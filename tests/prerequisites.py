"""A test's prerequisites: missing means ERROR, unless the run explicitly asked to be narrower.

Under ``make test`` (and CI, which runs it) a missing prerequisite (not root for the data plane,
a binary not installed, the kube build not there) fails the tests that need it with a message
naming what is missing: a green suite means every claim was checked. A skip happens only when
the run says it wants less: ``OVNVNET_ALLOW_SKIP=1`` in the environment (``make unit`` sets it; by
hand, e.g. a non-root ``OVNVNET_ALLOW_SKIP=1 pytest tests/integration``).
"""
from __future__ import annotations

import importlib.util
import os

import pytest

from harness.prereq import explain, missing, node_missing, stack_missing  # noqa: F401 (re-exported)

ALLOW_SKIP = "OVNVNET_ALLOW_SKIP"


def require(what: str, lacking: list[str]) -> None:
    """Fail (or, in a narrower run, skip) the current test when `lacking` is not empty."""
    if not lacking:
        return
    msg = explain(what, lacking)
    if os.environ.get(ALLOW_SKIP) == "1":
        pytest.skip(msg)
    pytest.fail(f"missing prerequisite: {msg} (or set {ALLOW_SKIP}=1 for a narrower run that skips it)",
                pytrace=False)


def modules_missing(*names: str) -> list[str]:
    return [f"Python module {n} (pip install -e '.[test]')" for n in names if importlib.util.find_spec(n) is None]
