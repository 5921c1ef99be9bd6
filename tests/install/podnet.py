"""A pod-network address for a process that runs on this machine's loopback, so that the API server
can reach it through a Service's Endpoints as it reaches a pod.

Endpoints may not hold loopback addresses, and without kube-proxy a Service's ClusterIP leads
nowhere (the API server's ClusterIP resolver would even send its packets out of the default route),
so the install tests run kube-apiserver with `--enable-aggregator-routing=true` (it then dials an
Endpoints address) and give the operator's "pod" an address of its own: a network namespace made
here, joined to the host namespace by a veth pair on a /30 of 198.18.0.0/15 (RFC 2544's test
range). A relay listens on that address inside the namespace and copies each connection, bytes
untouched (TLS stays end to end), to the operator's webhook port on 127.0.0.1. Traffic never
leaves this machine: it goes between the host namespace and the test's own namespace only.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import socket
import subprocess
import threading
from contextlib import closing

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")


class PodAddress:
    """`address:port` in a private netns, relayed to `127.0.0.1:target` in the host netns."""

    def __init__(self, target: int, port: int = 9443):
        tag = secrets.token_hex(3)
        third, fourth = secrets.randbelow(256), secrets.randbelow(64) * 4
        self.netns = f"ovnv-podnet-{tag}"
        self.host_if, self.pod_if = f"ovph{tag}", f"ovpp{tag}"
        self.host_ip, self.address = f"198.19.{third}.{fourth + 1}", f"198.19.{third}.{fourth + 2}"
        self.port, self.target = port, target
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.connections = 0

    # ------------------------------------------------------------------ network
    def up(self) -> PodAddress:
        _ip("netns", "add", self.netns)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.pod_if)
            _ip("link", "set", self.pod_if, "netns", self.netns)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.netns, "addr", "add", f"{self.address}/30", "dev", self.pod_if)
            _ip("-n", self.netns, "link", "set", self.pod_if, "up")
            _ip("-n", self.netns, "link", "set", "lo", "up")
            self._listener = self._listen_in_netns()
        except Exception:
            self.down()
            raise
        threading.Thread(target=self._accept_loop, daemon=True, name=f"relay-{self.netns}").start()
        return self

    def down(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    def _listen_in_netns(self) -> socket.socket:
        """A socket keeps the netns it was made in: make it there from a thread that enters the
        netns (setns changes only the calling thread), then leave."""
        result: dict = {}

        def make() -> None:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            target = os.open(f"/var/run/netns/{self.netns}", os.O_RDONLY)
            try:
                _setns(target)
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.address, self.port))
                sock.listen(64)
                result["sock"] = sock
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                result["error"] = exc
            finally:
                _setns(own)
                os.close(own)
                os.close(target)

        t = threading.Thread(target=make)
        t.start()
        t.join()
        if "error" in result:
            raise result["error"]
        return result["sock"]

    # ------------------------------------------------------------------ relay
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with closing(src):
                try:
                    while chunk := src.recv(65536):
                        dst.sendall(chunk)
                except OSError:
                    pass
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        back = threading.Thread(target=pump, args=(upstream, conn), daemon=True)
        back.start()
        pump(conn, upstream)
        back.join(timeout=30)
