"""Container images for the real node, built on this machine without any registry.

Three images, each written as an OCI archive (an OCI image layout in a tar) that containerd imports
with ``ctr images import``, and cached outside the checkout (``$OVNVNET_CACHE/images``, default
``/var/cache/ovnvnet/images``) under a key that hashes every input, so a rebuild happens only when
an input changed:

- ``localhost/busybox:1``: Debian's ``busybox-static`` binary and one symlink per applet (``sh``,
  ``ip``, ``ping``, ``sleep``...), written by :func:`oci_archive` (no tool but Python).
- ``localhost/pause:1``: the sandbox ("pause") image, the same busybox layer with
  ``sleep`` as its entrypoint. The runtime stops sandboxes with SIGKILL, so a PID 1 that ignores
  SIGTERM is enough.
- ``localhost/ovnvnet:dev``: the project's image built FROM THE DOCKERFILE with buildah
  (``buildah bud``, chroot isolation, vfs storage private to the cache). The Dockerfile's base
  images (``python:3.11-bookworm`` and ``-slim-bookworm`` from Docker Hub) are not reachable here:
  a STAND-IN is made with ``debootstrap`` (Debian 12 minbase + python3, pip, venv, gcc, libc6-dev,
  the same Python 3.11) and tagged under every name the Dockerfile's ``FROM`` lines use (read from
  the Dockerfile, ARG defaults substituted). A FROM pinned by digest (``name@sha256:...``) cannot
  be satisfied by a local stand-in, so the build then uses a copy of the Dockerfile whose FROM
  references lose their ``@sha256:`` part, nothing else. The stand-in base is NOT the official
  image: the resulting image is a faithful build of the Dockerfile's steps, on a different base.

Contract: :func:`build_all` returns ``{image name: archive path}``; every archive exists and
imports with ``ctr -n k8s.io images import --index-name NAME`` (busybox, pause) or plain
``images import`` (ovnvnet, whose archive carries its name). Concurrent builds are serialised by
a lock file in the cache.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import REPO

CACHE = Path(os.environ.get("OVNVNET_CACHE", "/var/cache/ovnvnet")) / "images"
BUSYBOX = Path("/bin/busybox")
BUSYBOX_IMAGE = "localhost/busybox:1"
PAUSE_IMAGE = "localhost/pause:1"
OVNVNET_IMAGE = "localhost/ovnvnet:dev"
# The stand-in for python:3.11-*-bookworm. Debian 12's python3 is 3.11.
STANDIN_SUITE = "bookworm"
STANDIN_PACKAGES = ("python3", "python3-pip", "python3-venv", "gcc", "libc6-dev", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
KEEP_OVNVNET_ARCHIVES = 4  # the newest project images kept in the cache
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

__all__ = ["build_all", "busybox_image", "pause_image", "ovnvnet_image", "oci_archive",
           "dockerfile_bases", "BUSYBOX_IMAGE", "PAUSE_IMAGE", "OVNVNET_IMAGE"]


def log(msg: str) -> None:
    print(f"[images] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- OCI layout writer
def _layer(files: list[tarfile.TarInfo], contents: dict[str, bytes]) -> bytes:
    """An uncompressed, reproducible layer tar (entries in the given order, mtime 0, root owned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in files:
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            data = contents.get(info.name)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def oci_archive(path: Path, name: str, layer_tar: bytes, config: dict) -> Path:
    """Write an OCI image layout tar at `path`: one gzip layer, the image config (``config``: the
    ``config`` section, e.g. Entrypoint, Env), a manifest, and an index naming the image `name`."""
    gz = gzip.compress(layer_tar, mtime=0)
    image_config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha(layer_tar)}"]},
        "history": [{"created_by": "harness.images", "created": "1970-01-01T00:00:00Z"}],
        "created": "1970-01-01T00:00:00Z",
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{_sha(image_config)}", "size": len(image_config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{_sha(gz)}", "size": len(gz)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": f"sha256:{_sha(manifest)}", "size": len(manifest),
                       "annotations": {"org.opencontainers.image.ref.name": name}}],
    }, sort_keys=True).encode()
    blobs = {f"blobs/sha256/{_sha(b)}": b for b in (gz, image_config, manifest)}
    entries = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index, **blobs}
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for arcname, data in entries.items():
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return path


def _busybox_layer() -> bytes:
    """/bin/busybox, a symlink per applet in /bin, and the directories a container expects."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    infos: list[tarfile.TarInfo] = []
    for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555),
                    ("tmp", 0o1777), ("root", 0o700), ("var", 0o755)):
        info = tarfile.TarInfo(d)
        info.type, info.mode = tarfile.DIRTYPE, mode
        infos.append(info)
    data = BUSYBOX.read_bytes()
    info = tarfile.TarInfo("bin/busybox")
    info.size, info.mode = len(data), 0o755
    infos.append(info)
    contents = {"bin/busybox": data,
                "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
                "etc/group": b"root:x:0:\nnobody:x:65534:\n"}
    for name in ("etc/passwd", "etc/group"):
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(contents[name]), 0o644
        infos.append(info)
    for applet in sorted(set(applets) - {"busybox"}):
        info = tarfile.TarInfo(f"bin/{applet}")
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
        infos.append(info)
    return _layer(infos, contents)


def _small_image(name: str, config: dict) -> Path:
    layer = _busybox_layer()
    key = _sha(layer + json.dumps([name, config], sort_keys=True).encode())[:16]
    path = CACHE / f"{name.split('/')[-1].replace(':', '-')}-{key}.tar"
    if not path.exists():
        with _locked("small"):
            if not path.exists():
                oci_archive(path, name, layer, config)
                log(f"{name}: wrote {path}")
    return path


def busybox_image() -> Path:
    return _small_image(BUSYBOX_IMAGE, {"Env": [f"PATH={PATH_ENV}"], "Cmd": ["sh"]})


def pause_image() -> Path:
    return _small_image(PAUSE_IMAGE, {"Env": [f"PATH={PATH_ENV}"],
                                      "Entrypoint": ["/bin/busybox", "sleep", "2147483647"]})


# ---------------------------------------------------------------------------- the Dockerfile build
def _dockerfile_args(text: str) -> dict[str, str]:
    """ARG defaults declared before the first FROM (the only ones a FROM line may use)."""
    args: dict[str, str] = {}
    for line in _logical_lines(text):
        word = line.split(None, 1)[0].upper() if line.strip() else ""
        if word == "FROM":
            break
        if word == "ARG":
            for item in line.split()[1:]:
                k, _, v = item.partition("=")
                args[k] = v.strip('"\'')
    return args


def _logical_lines(text: str) -> list[str]:
    out: list[str] = []
    cur = ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        out.append(cur + raw)
        cur = ""
    if cur:
        out.append(cur)
    return [line for line in out if line.strip()]


def _subst(ref: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), ref)


def dockerfile_bases(dockerfile: Path) -> list[tuple[str, str]]:
    """Every external base image of the Dockerfile as (reference as written, resolved reference):
    FROM lines naming an earlier stage or ``scratch`` are skipped."""
    text = dockerfile.read_text()
    args = _dockerfile_args(text)
    stages: set[str] = set()
    bases: list[tuple[str, str]] = []
    for line in _logical_lines(text):
        parts = line.split()
        if parts[0].upper() != "FROM":
            continue
        words = [p for p in parts[1:] if not p.startswith("--")]
        ref = words[0]
        resolved = _subst(ref, args)
        if resolved not in stages and resolved != "scratch":
            bases.append((ref, resolved))
        if len(words) >= 3 and words[1].upper() == "AS":
            stages.add(words[2])
    return bases


def _normalise(ref: str) -> str:
    """``python:3.11`` -> ``docker.io/library/python:3.11`` (digest dropped)."""
    ref = ref.split("@", 1)[0]
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    first = name.split("/")[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def _dockerignore_patterns(context: Path) -> list[tuple[bool, re.Pattern]]:
    path = context / ".dockerignore"
    pats: list[tuple[bool, re.Pattern]] = []
    if not path.exists():
        return pats
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line[1:] if neg else line
        pat = pat.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pat.startswith("**", i):
                rx += ".*"
                i += 2
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        pats.append((neg, re.compile(rx + "(?:/.*)?$")))
    return pats


def context_files(context: Path) -> list[Path]:
    """The files `buildah bud` sends as the build context: every file not excluded by
    .dockerignore (Docker's rules: the last matching pattern wins, ``!`` re-includes)."""
    pats = _dockerignore_patterns(context)
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(context):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for fn in filenames:
            rel = os.path.relpath(os.path.join(dirpath, fn), context)
            excluded = False
            for neg, rx in pats:
                if rx.match(rel):
                    excluded = not neg
            if not excluded:
                out.append(Path(rel))
    return sorted(out)


def _buildah(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    root = CACHE / "buildah"
    argv = ["buildah", "--root", str(root / "storage"), "--runroot", str(root / "run"),
            "--storage-driver", "vfs", *args]
    out = subprocess.run(argv, capture_output=capture, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{(out.stderr or '')[-3000:]}")
    return out


def _standin_rootfs() -> Path:
    """A debootstrap'd Debian 12 tree standing in for the python:3.11 base images (cached)."""
    key = _sha(json.dumps([STANDIN_SUITE, STANDIN_PACKAGES, _sha(CA_BUNDLE.read_bytes())]).encode())[:16]
    tarball = CACHE / f"standin-{key}.tar"
    if tarball.exists():
        return tarball
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        t0 = time.monotonic()
        log(f"debootstrap {STANDIN_SUITE} (minbase + {', '.join(STANDIN_PACKAGES)}): the stand-in base")
        out = subprocess.run(
            ["nice", "-n", "19", "debootstrap", "--variant=minbase", f"--include={','.join(STANDIN_PACKAGES)}",
             STANDIN_SUITE, str(rootfs)], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
            link = rootfs / "usr/local/bin" / name
            link.unlink(missing_ok=True)
            link.symlink_to(target)
        # these machines reach the registries through a chain only this bundle trusts
        shutil.copy(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball) + ".tmp", "."], check=True)
        os.replace(str(tarball) + ".tmp", tarball)
        log(f"stand-in base {tarball} in {time.monotonic() - t0:.0f}s")
    return tarball


def _import_standin(tarball: Path, names: list[str]) -> None:
    """Commit the stand-in tree into buildah's private storage under each of `names`."""
    key = tarball.stem
    have = _buildah("images", "--format", "{{.Name}}:{{.Tag}} {{.ID}}", check=False).stdout
    tagged = {line.split()[0] for line in have.splitlines() if line.strip()}
    marker = CACHE / "buildah" / f"{key}.id"
    if marker.exists() and all(n in tagged for n in names):
        return
    if not marker.exists() or _buildah("inspect", "--type", "image", marker.read_text().strip(),
                                       check=False).returncode != 0:
        ctr = _buildah("from", "--pull=never", "scratch").stdout.strip()
        try:
            mnt = _buildah("mount", ctr).stdout.strip()
            subprocess.run(["tar", "-C", mnt, "--numeric-owner", "-xf", str(tarball)], check=True)
            _buildah("umount", ctr)
            _buildah("config", "--env", f"PATH={PATH_ENV}", "--env", "LANG=C.UTF-8",
                     "--cmd", "python3", "--label", "io.ovnvnet.standin=debootstrap " + STANDIN_SUITE, ctr)
            image_id = _buildah("commit", "--quiet", ctr, f"localhost/ovnvnet-standin:{key}").stdout.strip()
        finally:
            _buildah("rm", ctr, check=False)
        marker.write_text(image_id)
    for name in names:
        _buildah("tag", marker.read_text().strip(), name)


def ovnvnet_image(context: Path = REPO) -> Path:
    """Build the Dockerfile in `context` into an OCI archive named OVNVNET_IMAGE (cached)."""
    dockerfile = context / "Dockerfile"
    files = context_files(context)
    h = hashlib.sha256()
    for rel in [Path("Dockerfile"), Path(".dockerignore"), *files]:
        p = context / rel
        if p.is_file():
            h.update(str(rel).encode() + b"\0" + p.read_bytes() + b"\0")
    key = h.hexdigest()[:16]
    archive = CACHE / f"ovnvnet-dev-{key}.tar"
    if archive.exists():
        return archive
    with _locked("ovnvnet"):
        if archive.exists():
            return archive
        bases = dockerfile_bases(dockerfile)
        _import_standin(_standin_rootfs(), sorted({_normalise(resolved) for _, resolved in bases}))
        build_file = dockerfile
        pinned = [ref for ref, resolved in bases if "@" in resolved]
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            if pinned:
                # a digest names the official image's bytes: no local stand-in can carry it
                text = dockerfile.read_text()
                args = _dockerfile_args(text)
                lines = []
                for line in text.splitlines(keepends=True):
                    parts = line.split()
                    if parts and parts[0].upper() == "FROM":
                        token = next(p for p in parts[1:] if not p.startswith("--"))
                        resolved = _subst(token, args)
                        if "@" in resolved:
                            line = line.replace(token, resolved.split("@", 1)[0], 1)
                    lines.append(line)
                build_file = Path(tmp) / "Dockerfile.standin"
                build_file.write_text("".join(lines))
                log(f"FROM pinned by digest ({', '.join(pinned)}): building with the digests removed")
            t0 = time.monotonic()
            log(f"buildah bud {dockerfile} -> {OVNVNET_IMAGE} (stand-in base: debootstrap {STANDIN_SUITE})")
            out = subprocess.run(
                ["nice", "-n", "19", "buildah", "--root", str(CACHE / "buildah" / "storage"),
                 "--runroot", str(CACHE / "buildah" / "run"), "--storage-driver", "vfs",
                 "bud", "--pull=never", "--network", "host", "--isolation", "chroot", "--layers=false",
                 "-f", str(build_file), "-t", OVNVNET_IMAGE, str(context)],
                capture_output=True, text=True)
            (CACHE / "ovnvnet-build.log").write_text(out.stdout + out.stderr)
            if out.returncode != 0:
                raise RuntimeError(f"buildah bud failed (log {CACHE / 'ovnvnet-build.log'}):\n"
                                   f"{(out.stdout + out.stderr)[-3000:]}")
            log(f"built {OVNVNET_IMAGE} in {time.monotonic() - t0:.0f}s")
        tmp_archive = archive.with_suffix(".tmp")
        tmp_archive.unlink(missing_ok=True)
        _buildah("push", OVNVNET_IMAGE, f"oci-archive:{tmp_archive}:{OVNVNET_IMAGE}")
        tmp_archive.replace(archive)
        _prune("ovnvnet-dev-*.tar", keep=KEEP_OVNVNET_ARCHIVES)
    return archive


def _prune(pattern: str, keep: int) -> None:
    """Remove all but the `keep` newest archives matching `pattern` (each source change of the
    image's context makes a new ~200 MB archive; worktrees building at once keep theirs)."""
    old = sorted(CACHE.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)[keep:]
    for path in old:
        path.unlink(missing_ok=True)
        log(f"removed the old archive {path.name}")


def build_all(*, ovnvnet: bool = True) -> dict[str, Path]:
    out = {BUSYBOX_IMAGE: busybox_image(), PAUSE_IMAGE: pause_image()}
    if ovnvnet:
        out[OVNVNET_IMAGE] = ovnvnet_image()
    return out


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ovnvnet-images", description=__doc__.splitlines()[0])
    ap.add_argument("--no-ovnvnet", action="store_true", help="only the busybox and pause images")
    args = ap.parse_args(argv)
    for name, path in build_all(ovnvnet=not args.no_ovnvnet).items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
