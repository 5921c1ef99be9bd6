"""A missing prerequisite makes the suite fail, naming what is missing; it skips only when the run
explicitly asked to be narrower (OVNVNET_ALLOW_SKIP=1, see tests/prerequisites.py).

Each case runs pytest on one real test in a subprocess with the prerequisite really taken away:
a binary left off PATH, or the whole run as an unprivileged user. Nothing starts: the check comes
before any fixture creates a process or a directory.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO
from tests.prerequisites import ALLOW_SKIP

pytestmark = pytest.mark.timeout(300)

NOBODY = 65534


def path_without(tmp: Path, *hidden: str) -> str:
    """A PATH with every executable of ours except `hidden` (symlinks in one directory)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            target = bin_dir / entry.name
            if entry.name in hidden or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    return str(bin_dir)


def run_pytest(nodeid: str, *, env: dict[str, str], user: int | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", nodeid]
    if user is not None and os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    out.stdout += out.stderr
    return out


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ALLOW_SKIP and not k.startswith("PYTEST_")}
    env.update(PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


# one real test per directory with prerequisites, and one binary it cannot do without
CASES = [
    ("tests/cni/test_dataplane_cni.py::test_version", "ovn-controller"),
    ("tests/e2e/test_demo.py::test_demo_runs_twice_and_reports", "ping"),
    ("tests/integration/test_seed.py", "etcd"),
    ("tests/install/test_image.py::test_shim_builds_static_as_in_the_dockerfile", "gcc"),
]


@pytest.mark.parametrize("nodeid,binary", CASES, ids=[c[1] for c in CASES])
def test_missing_binary_is_an_error_naming_it(tmp_path: Path, nodeid: str, binary: str) -> None:
    out = run_pytest(nodeid, env=clean_env(PATH=path_without(tmp_path, binary)))
    assert out.returncode == 1, out.stdout[-3000:]
    assert "error" in out.stdout.splitlines()[-1] and "skipped" not in out.stdout.splitlines()[-1], \
        out.stdout[-3000:]
    assert "missing prerequisite: " in out.stdout and f"{binary} (not on PATH)" in out.stdout, out.stdout[-3000:]


def test_not_root_is_an_error_for_the_data_plane(tmp_path: Path) -> None:
    out = run_pytest(CASES[0][0], env=clean_env(HOME=str(tmp_path)), user=NOBODY)
    assert out.returncode == 1, out.stdout[-3000:]
    assert "1 error" in out.stdout.splitlines()[-1], out.stdout[-3000:]
    assert "missing prerequisite: " in out.stdout and "root (network namespaces and OVS)" in out.stdout, \
        out.stdout[-3000:]


def test_a_narrower_run_that_asks_for_it_skips(tmp_path: Path) -> None:
    out = run_pytest(CASES[0][0], env=clean_env(PATH=path_without(tmp_path, "ovn-controller"), **{ALLOW_SKIP: "1"}))
    assert out.returncode == 0, out.stdout[-3000:]
    assert "1 skipped" in out.stdout.splitlines()[-1], out.stdout[-3000:]
    assert "ovn-controller (not on PATH)" in out.stdout, out.stdout[-3000:]
