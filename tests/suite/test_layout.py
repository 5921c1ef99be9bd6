"""The development harness stays out of what ships, and what ships points at what exists.

The wheel holds the packages setuptools finds under ``operator/`` (pyproject), the image copies
``operator/ovnvnet`` (Dockerfile, through .dockerignore): neither may carry the harness. Every
console script pyproject declares names a callable that imports.
"""
from __future__ import annotations

import importlib
import tomllib

import setuptools

from harness import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_wheel_holds_the_operator_package_only() -> None:
    where = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]
    packages = [p for w in where for p in setuptools.find_packages(str(REPO / w))]
    assert "ovnvnet" in packages and "ovnvnet.cni" in packages, packages
    assert all(p == "ovnvnet" or p.startswith("ovnvnet.") for p in packages), packages
    assert not [p for p in packages if "testing" in p or "harness" in p], packages
    assert not (REPO / "operator" / "ovnvnet" / "testing").exists()


def test_the_image_copies_no_harness() -> None:
    allowed = [line.strip()[1:] for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip().startswith("!")]
    assert allowed and not [a for a in allowed if a.startswith(("harness", "tests", "bench"))], allowed
    copies = [line for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("COPY")]
    assert not [c for c in copies if "harness" in c or "testing" in c], copies


def test_console_scripts_name_callables_that_import() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert "ovnvnet-stack" not in scripts, "the local stack is the Makefile's (make up), not the package's"
    for name, target in scripts.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr, None)), f"{name} = {target!r}"
