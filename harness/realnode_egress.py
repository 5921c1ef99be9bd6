"""The API server's way into the real node: an HTTP CONNECT proxy on a unix socket, run in the
node's network namespace (the part konnectivity or a routed pod network plays in a cluster).

    nsenter --net=/var/run/netns/NODE -- python -m harness.realnode_egress --socket S --allow CIDR...

The API server runs on the host's loopback; webhook Services (resolved to their endpoints'
pod addresses by ``--enable-aggregator-routing``) and the kubelet live in the node's namespace.
Its ``--egress-selector-config-file`` sends the ``cluster`` traffic (webhooks, kubelet) as
``CONNECT host:port`` over this socket; the proxy dials from inside the node's namespace, only to
the allowed networks (the node's pod network and loopback), and answers 403 to anything else.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


def _target(line: str, allow: list) -> tuple[str, int] | None:
    parts = line.split()
    if len(parts) != 3 or parts[0] != "CONNECT":
        return None
    host, _, port = parts[1].rpartition(":")
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
        return (str(addr), int(port)) if any(addr in net for net in allow) else None
    except ValueError:
        return None


async def _handle(reader, writer, allow) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    target = _target(head.split(b"\r\n", 1)[0].decode("latin-1"), allow)
    if target is None:
        writer.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        writer.close()
        return
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*target), 5)
    except (TimeoutError, OSError) as exc:
        writer.write(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{exc}".encode())
        writer.close()
        return
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await writer.drain()
    await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))


async def serve(socket_path: str, allow: list) -> None:
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = await asyncio.start_unix_server(lambda r, w: _handle(r, w, allow), path=socket_path)
    os.chmod(socket_path, 0o600)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--allow", action="append", required=True, help="a CIDR the proxy may dial")
    args = ap.parse_args(argv)
    allow = [ipaddress.ip_network(c) for c in args.allow]
    try:
        asyncio.run(serve(args.socket, allow))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
