"""The image's Python dependencies come from lock files with hashes, kept consistent with
pyproject.toml, and its base images are pinned by digest.

Fast and offline: the pins themselves. test_image.py installs from the lock in a clean venv (with
`--require-hashes`, then `pip check`), which proves the lock closed and its hashes right.
After changing dependencies: `bash hack/lock.sh`.
"""
from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import REPO

pytestmark = pytest.mark.timeout(60)

LOCK = REPO / "requirements.lock"
BUILD_LOCK = REPO / "requirements-build.lock"
DOCKERFILE = (REPO / "Dockerfile").read_text()
REGENERATE = "regenerate with `bash hack/lock.sh`"


def pins(path) -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, sha256 hashes), from pip-compile's output."""
    text = path.read_text().replace("\\\n", " ")
    out: dict[str, tuple[Version, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"{path.name}: option line {line!r} (an index or find-links)"
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)\s*", line)
        assert m, f"{path.name}: {line[:80]!r} is not `name==version --hash=sha256:...`"
        hashes = re.findall(r"sha256:([0-9a-f]{64})", m.group(3))
        assert hashes, f"{path.name}: {m.group(1)} has no hash"
        out[canonicalize_name(m.group(1))] = (Version(m.group(2)), hashes)
    return out


def test_every_dependency_is_pinned_with_hashes_and_satisfies_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    locked = pins(LOCK)
    problems = []
    for raw in project["dependencies"]:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        if name not in locked:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{req.name}: locked {locked[name][0]} does not satisfy {req.specifier}")
    assert not problems, "; ".join(problems) + f": {REGENERATE}"
    # the header names the input, so the lock is regenerated from pyproject.toml, not edited
    assert "pip-compile" in LOCK.read_text() and "pyproject.toml" in LOCK.read_text().split("\n\n")[0]


def test_build_tools_are_locked_too():
    build = pins(BUILD_LOCK)
    assert {"setuptools", "wheel"} <= set(build), REGENERATE
    inputs = {canonicalize_name(line.strip()) for line in (REPO / "requirements-build.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert inputs <= set(build)


def test_dockerfile_installs_only_from_the_locks():
    assert "pip install --no-cache-dir --require-hashes --no-deps -r requirements-build.lock" in DOCKERFILE
    assert ("pip wheel --no-cache-dir --require-hashes --no-deps --no-build-isolation --wheel-dir /wheels "
            "-r requirements.lock") in DOCKERFILE
    assert "pip install --no-cache-dir --no-index --no-deps /wheels/*.whl" in DOCKERFILE
    # no other pip call that could resolve or fetch
    code = re.sub(r"#.*", "", DOCKERFILE)
    for line in re.findall(r"pip \w+[^\n\\]*", code):
        if not line.startswith("pip check"):
            assert "--require-hashes" in line or "--no-index" in line, line
    assert "pyproject.toml" not in code, "the image must not resolve from pyproject.toml"


def test_base_images_are_pinned_by_digest():
    stages = re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.M)
    assert stages, "no FROM"
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE, re.M))
    for ref in stages:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
        assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", ref), f"FROM {ref} is not pinned by digest"
    # and the pins say where they come from and that they were not checked against the registry here
    assert "docker-library/repo-info" in DOCKERFILE and "NOT pulled" in DOCKERFILE
