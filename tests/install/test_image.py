"""What of the Dockerfile can run without a container engine: its shim build command, its Python
install (the locked, hash-checked dependency wheels into a clean venv, the package source on
PYTHONPATH, as in the image), and that .dockerignore lets through exactly what it copies."""
from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.prerequisites import missing, require

from .conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def copy_sources() -> list[str]:
    """Sources of the COPY instructions that read the build context (not another stage)."""
    out = []
    for line in DOCKERFILE.splitlines():
        words = line.split()
        if words and words[0] == "COPY" and not any(w.startswith("--from=") for w in words):
            out += [w for w in words[1:-1] if not w.startswith("--")]
    return out


def test_dockerignore_lets_through_what_the_dockerfile_copies():
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "everything is excluded unless named"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    for src in copy_sources():
        src = src.rstrip("/")
        assert (REPO / src).exists(), src
        assert any(src == a or src.startswith(a + "/") or fnmatch.fnmatch(src, a) for a in allowed), src


@pytest.fixture
def compiler() -> None:
    require("the shim's static build", missing(binaries=["gcc", "readelf"]))


def test_shim_builds_static_as_in_the_dockerfile(compiler, tmp_path: Path):
    (cmd,) = re.findall(r"&& (gcc [^\n\\]+)", DOCKERFILE)
    argv = shlex.split(cmd.replace("/out/bin/", f"{tmp_path}/"))
    subprocess.run(argv, cwd=REPO, check=True)
    shim = tmp_path / "ovn-k8s-cni-overlay"
    headers = subprocess.run(["readelf", "-l", str(shim)], capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in headers, "the shim must not need the node's dynamic loader"
    # it runs: VERSION without an agent answers "try again" rather than crashing
    out = subprocess.run([str(shim)], input='{"cniVersion":"1.0.0","name":"x","type":"ovn-k8s-cni-overlay"}',
                         env={"CNI_COMMAND": "VERSION", "OVNVNET_AGENT_SOCKET": str(tmp_path / "none.sock")},
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.strip(), out


@pytest.mark.timeout(900)
def test_package_installs_as_in_the_image(tmp_path: Path):
    """The Dockerfile's install, replayed: the build tools from requirements-build.lock, wheels
    of requirements.lock with every hash checked and no build isolation, a clean venv, a
    --no-index --no-deps install, `pip check` (the lock is closed), the source copied to app/ and
    put on PYTHONPATH: both entry points import and parse their arguments."""
    wheels, app = tmp_path / "wheels", tmp_path / "app"
    build_env, env_dir = tmp_path / "build", tmp_path / "venv"
    for d in (build_env, env_dir):
        venv.create(d, with_pip=True)
    bpy, py = build_env / "bin" / "python", env_dir / "bin" / "python"
    steps = [
        [str(bpy), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", "-r",
         str(REPO / "requirements-build.lock")],
        [str(bpy), "-m", "pip", "wheel", "-q", "--require-hashes", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), "-r", str(REPO / "requirements.lock")],
    ]
    for argv in steps:
        out = subprocess.run(argv, capture_output=True, text=True)
        assert out.returncode == 0, (argv, out.stderr[-3000:])
    assert not list(wheels.glob("ovnvnet-*.whl"))
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                              *map(str, wheels.glob("*.whl"))], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    check = subprocess.run([str(py), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, f"the lock is not closed: {check.stdout}"
    shutil.copytree(REPO / "operator" / "ovnvnet", app / "ovnvnet")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(app), "PYTHONDONTWRITEBYTECODE": "1"}
    probe = subprocess.run(
        [str(py), "-c", "import ovnvnet, ovnvnet.main, ovnvnet.cni.agent, ovnvnet.health; print(ovnvnet.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(app)), "the package must come from the copied source"
    helptext = subprocess.run([str(py), "-m", "ovnvnet.cni.agent", "--help"], capture_output=True, text=True,
                              env=env, cwd=tmp_path)
    assert helptext.returncode == 0 and "--node" in helptext.stdout, helptext.stderr
    # the operator's entry point loads everything and gets as far as reading its settings: with no
    # OVN_NB_DB here it exits at once, non-zero, naming the missing setting (not an import error)
    out = subprocess.run([str(py), "-m", "ovnvnet"], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=60)
    assert out.returncode != 0 and "OVN_NB_DB is not set" in out.stderr, out.stderr[-2000:]
    assert "ModuleNotFoundError" not in out.stderr and "ImportError" not in out.stderr, out.stderr[-2000:]
