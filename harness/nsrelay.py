"""TCP relays between network namespaces: what joins the real node to the stack on loopback.

    python -m harness.nsrelay --forward NODE_NETNS,10.96.0.1:443=,127.0.0.1:PORT ...

Each ``--forward LISTEN_NETNS,LISTEN_ADDR=TARGET_NETNS,TARGET_ADDR`` listens on LISTEN_ADDR inside
LISTEN_NETNS and copies every connection both ways to TARGET_ADDR inside TARGET_NETNS (an empty
netns name is this process's own). A socket stays in the namespace it was created in, so one
process serves every direction: the listening and the outgoing sockets are made while the
thread is switched into their namespace (setns), and the thread switches back at once.

The real node uses it for the API server as the in-cluster Service address (10.96.0.1:443 in the
node namespace, what kube-proxy would provide), the OVN NB for pods, and the kubelet's port on the
host's loopback (the API server's exec/logs/port-forward). Nothing leaves the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Switch this thread into network namespace `name` (``ip netns`` name; "" = no switch)."""
    if not name:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def parse_forward(spec: str) -> tuple[str, tuple[str, int], str, tuple[str, int]]:
    try:
        listen, target = spec.split("=", 1)
        lns, laddr = listen.split(",", 1)
        tns, taddr = target.split(",", 1)
        return lns, _addr(laddr), tns, _addr(taddr)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--forward {spec!r}: expected LISTEN_NETNS,HOST:PORT=TARGET_NETNS,HOST:PORT") from None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _serve(lns: str, laddr: tuple[str, int], tns: str, taddr: tuple[str, int]) -> asyncio.AbstractServer:
    loop = asyncio.get_running_loop()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with in_netns(tns):
            out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        out.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(out, taddr), 10)
            treader, twriter = await asyncio.open_connection(sock=out)
        except (TimeoutError, OSError):
            out.close()
            writer.close()
            return
        await asyncio.gather(_pipe(reader, twriter), _pipe(treader, writer))
        twriter.close()
        writer.close()

    with in_netns(lns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(laddr)
    sock.listen(256)
    sock.setblocking(False)
    return await asyncio.start_server(handle, sock=sock)


async def main(forwards: list[tuple[str, tuple[str, int], str, tuple[str, int]]]) -> None:
    servers = [await _serve(*f) for f in forwards]
    for (lns, laddr, tns, taddr) in forwards:
        print(f"relay {lns or 'host'} {laddr[0]}:{laddr[1]} -> {tns or 'host'} {taddr[0]}:{taddr[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ovnvnet-nsrelay", description=__doc__.splitlines()[0])
    ap.add_argument("--forward", action="append", type=parse_forward, required=True,
                    help="LISTEN_NETNS,HOST:PORT=TARGET_NETNS,HOST:PORT (empty netns: ours)")
    args = ap.parse_args(argv)
    asyncio.run(main(args.forward))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
