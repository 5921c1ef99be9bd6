"""`make up` / `make down` semantics through the CLI they call: state and logs in the directory,
an env file for kubectl/ovn-nbctl, and a second `up` after processes died restarts just those."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from harness.stack import REPO, Stack, pid_alive


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.stack", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_up_restarts_only_what_is_missing_and_down_removes(tmp_path: Path) -> None:
    root = tmp_path / "stack"
    out = _cli("up", "--dir", str(root))
    try:
        assert out.returncode == 0, out.stderr
        env = (root / "env").read_text()
        assert f"export KUBECONFIG={root}/kubeconfig" in env and "export OVN_NB_DB=tcp:127.0.0.1:" in env
        stack = Stack(root)
        before = {name: stack.pid(name) for name in Stack.COMPONENTS}
        assert all(before.values()) and all(stack.status().values())
        # the operator gets the stack's seal key: 32 random bytes, readable by the owner only
        key = root / "seal.key"
        assert len(key.read_bytes()) == 32 and key.stat().st_mode & 0o777 == 0o600
        environ = Path(f"/proc/{before['operator']}/environ").read_bytes().split(b"\0")
        assert f"OVNVNET_SEAL_KEY_FILE={key}".encode() in environ
        # kubectl and ovn-nbctl work from the env file
        sh = subprocess.run(["bash", "-c", f"source {root}/env && kubectl get vnet && ovn-nbctl ls-list"],
                            capture_output=True, text=True)
        assert sh.returncode == 0, sh.stderr
        # one process of each part dies: the second `up` restarts exactly those
        killed = ("operator", "kube-controller-manager", "ovn-northd")
        for name in killed:
            os.kill(before[name], signal.SIGKILL)
        out = _cli("up", "--dir", str(root))
        assert out.returncode == 0, out.stderr
        after = {name: stack.pid(name) for name in Stack.COMPONENTS}
        for name in killed:
            assert after[name] != before[name] and pid_alive(after[name]), name
        assert {k: v for k, v in after.items() if k not in killed} == \
               {k: v for k, v in before.items() if k not in killed}, "only what died may be restarted"
    finally:
        out = _cli("down", "--dir", str(root))
    assert out.returncode == 0, out.stderr
    assert not root.exists()
    assert not any(pid_alive(p) for p in before.values() if p)
