# syntax=docker/dockerfile:1
# One image for both workloads (see manifests/base/): the operator (`python -m ovnvnet`, non-root)
# and the node agent (`python -m ovnvnet.cni.agent`, root with a few capabilities), plus the CNI
# shim that the agent's init step copies onto each node.
#
#   docker build -t ovnvnet:0.1.0 .
#
# tests/install/test_image.py replays the build steps that need no container engine;
# tests/install/test_lock.py keeps the lock files consistent with pyproject.toml.
#
# Supply chain:
# - Base images pinned by digest (the multi-platform index digest). Both digests are copied from
#   the Docker official images' own published record, github.com/docker-library/repo-info
#   (repos/python/remote/3.11-slim-bookworm.md, 3.11-bookworm.md: Python 3.11.16 on Debian 12,
#   built 2026-08-25 and 2026-09-19). They were NOT pulled or checked against the registry from
#   the machine that wrote this line (it reaches no image registry); before a release, check them:
#   `docker buildx imagetools inspect python:3.11-slim-bookworm` shows the current digest. A build
#   without a registry (a stand-in base, see README) overrides them with --build-arg.
# - Python dependencies from requirements.lock (pip-compile --generate-hashes, see hack/lock.sh):
#   every distribution checked against its sha256 (--require-hashes). The tools that build the
#   sdists (setuptools, wheel) come from requirements-build.lock the same way, and the wheels are
#   built without build isolation, so pip fetches nothing unchecked.
ARG BUILD_IMAGE=python:3.11-bookworm@sha256:b99029c95d3d37fb1e4e76d287f7984373dca77c665885986e31b2c95260c13c
ARG RUNTIME_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

# ---- build: the C shim (libc only, static so it runs on any node) and every Python wheel
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY cni/shim/ovn-k8s-cni-overlay.c cni/shim/
RUN mkdir -p /out/bin \
 && gcc -O2 -Wall -Wextra -Werror -std=c11 -static -o /out/bin/ovn-k8s-cni-overlay cni/shim/ovn-k8s-cni-overlay.c
COPY requirements-build.lock requirements.lock ./
# Wheels for the locked dependencies (some, like ovs, compile here where gcc is), not for ovnvnet
# itself: its source is copied as is below, so Tilt's live_update can sync operator/ovnvnet over it.
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements-build.lock \
 && pip wheel --no-cache-dir --require-hashes --no-deps --no-build-isolation --wheel-dir /wheels -r requirements.lock

# ---- runtime: slim Python, the dependencies, the package source, the shim
FROM ${RUNTIME_IMAGE}
# exactly the wheels built from the lock: nothing resolved, nothing fetched
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --no-deps /wheels/*.whl \
 && pip check \
 && echo 'ovnvnet:x:65532:65532:ovnvnet:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'ovnvnet:x:65532:' >> /etc/group
COPY --from=build /out/bin/ovn-k8s-cni-overlay /opt/ovnvnet/bin/ovn-k8s-cni-overlay
# Owned by the operator's user only so Tilt's live_update can sync into it; in a cluster the
# Deployment's readOnlyRootFilesystem keeps it read-only.
COPY --chown=65532:65532 operator/ovnvnet /app/ovnvnet
ENV PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
# The operator runs as this user; the agent's DaemonSet overrides it with root (it plumbs netns).
# It has a passwd entry (above): Kopf names itself with getpass.getuser(), which fails without one.
USER 65532:65532
EXPOSE 8080 9443
CMD ["python", "-m", "ovnvnet"]
