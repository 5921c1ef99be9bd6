"""The Tiltfile evaluates (starlark-rust through starlark-pyo3) with the Tilt built-ins it uses
stubbed, and everything it names exists: paths in the repo, the image the manifests use, the
objects and workloads it groups, the operator's health port, the Dockerfile's source directory."""
from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.stack import pid_alive
from tests.prerequisites import modules_missing, require

from .conftest import REPO, find, kustomize

try:
    import starlark
except ImportError:  # an error naming it, from the fixture below
    starlark = None


@pytest.fixture(autouse=True)
def prerequisites() -> None:
    require("evaluating the Tiltfile", modules_missing("starlark"))

TILT_GLOBALS = ("allow_k8s_contexts", "docker_build", "fall_back_on", "sync", "run", "k8s_yaml",
                "kustomize", "decode_yaml_stream", "encode_yaml_stream", "k8s_resource",
                "port_forward", "link", "local_resource")


class Tilt:
    """Records the calls; the few built-ins that return values return what Tilt's would."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[tuple, dict]]] = {name: [] for name in TILT_GLOBALS}
        self.yaml: str | None = None

    def module(self) -> Any:
        m = starlark.Module()
        for name in TILT_GLOBALS:
            m.add_callable(name, self._recorder(name))
        m["TRIGGER_MODE_MANUAL"] = "manual"
        m["TRIGGER_MODE_AUTO"] = "auto"
        return m

    def _recorder(self, name: str):
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name].append((args, kwargs))
            if name == "kustomize":
                path = REPO / args[0]
                assert path.is_dir(), path
                return kustomize(path)
            if name == "decode_yaml_stream":
                return [d for d in yaml.safe_load_all(args[0]) if d]
            if name == "encode_yaml_stream":
                return yaml.safe_dump_all(args[0])
            if name == "k8s_yaml":
                self.yaml = args[0]
            if name in ("sync", "run", "fall_back_on", "port_forward", "link"):
                return {"step": name, "args": list(args), **kwargs}
            return None
        return call


@pytest.fixture(scope="module")
def tilt() -> Tilt:
    t = Tilt()
    src = (REPO / "Tiltfile").read_text()
    module = t.module()
    starlark.eval(module, starlark.parse("Tiltfile", src), starlark.Globals.standard())
    t.module_values = module  # type: ignore[attr-defined]
    return t


def test_paths_it_names_exist(tilt: Tilt):
    ((ref, context), build) = tilt.calls["docker_build"][0]
    assert (REPO / context).is_dir() and (REPO / build["dockerfile"]).is_file()
    for path in build["only"]:
        assert (REPO / path).exists(), path
    steps = build["live_update"]
    assert steps[0]["step"] == "fall_back_on", "fall_back_on must come first"
    for path in steps[0]["args"][0]:
        assert (REPO / path).exists(), path
    syncs = [s for s in steps if s["step"] == "sync"]
    dockerfile = (REPO / "Dockerfile").read_text()
    for s in syncs:
        local, remote = s["args"]
        assert (REPO / local).is_dir(), local
        # the container holds the same directory at `remote`, on its PYTHONPATH
        assert re.search(rf"^COPY .*{re.escape(local)} {re.escape(remote)}$", dockerfile, re.M), remote
        assert re.search(rf"PYTHONPATH={re.escape(str(Path(remote).parent))}\b", dockerfile)
    for (_, kw) in tilt.calls["local_resource"]:
        for path in kw.get("deps", []):
            assert (REPO / path).exists(), path
    assert [a[0] for a, _ in tilt.calls["kustomize"]] == ["manifests"]


def test_image_and_objects_match_the_manifests(tilt: Tilt):
    objs = [d for d in yaml.safe_load_all(tilt.yaml) if d]
    ((ref, _), _) = tilt.calls["docker_build"][0]
    pod_specs = [o["spec"]["template"]["spec"] for o in objs if o["kind"] in ("Deployment", "DaemonSet")]
    images = {c["image"].split(":")[0] for s in pod_specs for c in s.get("initContainers", []) + s["containers"]}
    assert images == {ref}
    workloads = {o["metadata"]["name"] for o in objs if o["kind"] in ("Deployment", "DaemonSet")}
    grouped: set[str] = set()
    for args, kw in tilt.calls["k8s_resource"]:
        if args:
            assert args[0] in workloads, args[0]
        for ref_ in kw.get("objects", []):
            name, kind = ref_.split(":")
            assert any(o["metadata"]["name"] == name and o["kind"].lower() == kind for o in objs), ref_
            grouped.add(ref_)
        for dep in kw.get("resource_deps", []):
            names = {a[0] for a, _ in tilt.calls["k8s_resource"] if a} | {
                k["new_name"] for _, k in tilt.calls["k8s_resource"] if "new_name" in k}
            assert dep in names, dep
        assert kw.get("labels"), "every resource has a label"
    # every object that is not a workload is grouped somewhere (CRDs before the operator)
    others = {f"{o['metadata']['name']}:{o['kind'].lower()}" for o in objs
              if o["kind"] not in ("Deployment", "DaemonSet", "Service")}
    assert others <= grouped, others - grouped
    operator_deps = next(kw["resource_deps"] for a, kw in tilt.calls["k8s_resource"] if a == ("ovnvnet-operator",))
    assert operator_deps
    # the port-forward reaches the operator's health/metrics port
    deploy = find(objs, "Deployment", "ovnvnet-operator")
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["health"]
    (_, kw) = next(call for call in tilt.calls["k8s_resource"] if call[0] == ("ovnvnet-operator",))
    assert [pf["args"][1] for pf in kw["port_forwards"]] == [port]


def test_dev_loop_keeps_commands_and_restarts_in_place(tilt: Tilt, tmp_path: Path):
    """The manifests Tilt applies wrap each command in a restart loop; the loop restarts the
    process when live_update kills it, and exits promptly on TERM."""
    objs = [d for d in yaml.safe_load_all(tilt.yaml) if d]
    base = [d for d in yaml.safe_load_all(kustomize(REPO / "manifests")) if d]
    for kind, name in (("Deployment", "ovnvnet-operator"), ("DaemonSet", "ovnvnet-agent")):
        (dev,) = find(objs, kind, name)["spec"]["template"]["spec"]["containers"]
        (orig,) = find(base, kind, name)["spec"]["template"]["spec"]["containers"]
        assert dev["command"][:2] == ["/bin/sh", "-c"] and dev["command"][4:] == orig["command"]
        assert dev["securityContext"]["readOnlyRootFilesystem"] is False
    script = dev["command"][2]
    pidfile_in_tiltfile = tilt.module_values["PIDFILE"]  # type: ignore[attr-defined]
    pidfile = tmp_path / "dev.pid"
    script = script.replace(pidfile_in_tiltfile, str(pidfile))
    loop = subprocess.Popen(["/bin/sh", "-c", script, "ovnvnet-dev", "sleep", "300"])
    try:
        def wait_pid(old: int | None) -> int:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if pidfile.exists() and pidfile.read_text().strip():
                    pid = int(pidfile.read_text())
                    if pid != old:
                        return pid
                time.sleep(0.05)
            raise AssertionError("no (new) child")
        first = wait_pid(None)
        (run_step,) = [s for s in tilt.calls["docker_build"][0][1]["live_update"] if s["step"] == "run"]
        cmd = run_step["args"][0].replace(pidfile_in_tiltfile, str(pidfile))
        subprocess.run(["/bin/sh", "-c", cmd], check=True)
        second = wait_pid(first)
        assert second != first and loop.poll() is None
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(5) == 0
        deadline = time.monotonic() + 5
        while pid_alive(second) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(second), "the child outlived the loop"
    finally:
        if loop.poll() is None:
            loop.kill()
