"""What the machine must have for each part of the local stack, as a list of what is missing.

``hack/bootstrap.sh`` installs all of it (the data plane also needs root: network namespaces,
OVS). The stack refuses to start a part whose prerequisites are missing, naming them; the test
suite turns the same lists into errors (or, only for an explicitly narrower run, skips: see
``tests/prerequisites.py``).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

__all__ = ["CENTRAL", "KUBE", "NODE", "explain", "missing", "node_missing", "stack_missing"]

CENTRAL = ("ovsdb-tool", "ovsdb-server", "ovn-northd", "ovn-nbctl")
KUBE = ("etcd", "openssl")
KUBE_FILES = ("kube-apiserver", "kube-controller-manager", "kubectl")  # in the kube build cache
NODE = ("ovs-vsctl", "ovs-vswitchd", "ovn-controller", "ovn-sbctl", "ip", "gcc", "go")


def missing(*, root: bool = False, binaries: Iterable[str] = (), files: Iterable[Path] = ()) -> list[str]:
    """What of root, the `binaries` (on PATH) and the `files` this machine lacks."""
    out = []
    if root and os.geteuid() != 0:
        out.append("root (network namespaces and OVS)")
    out += [f"{b} (not on PATH)" for b in binaries if shutil.which(b) is None]
    out += [f"{f} (no such file)" for f in files if not Path(f).exists()]
    return out


def stack_missing(kube_bin: Path) -> list[str]:
    """What the Kubernetes control plane and OVN central need."""
    return missing(binaries=CENTRAL + KUBE, files=[Path(kube_bin) / f for f in KUBE_FILES])


def node_missing() -> list[str]:
    """What a node (its data plane, the CNI binaries' build) needs."""
    return missing(root=True, binaries=NODE)


def explain(what: str, lacking: list[str]) -> str:
    return f"{what} needs {'; '.join(lacking)}: run hack/bootstrap.sh (as root for the data plane)"
