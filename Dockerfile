# syntax=docker/dockerfile:1
# One image for both workloads (see manifests/base/): the operator (`python -m ovnvnet`, non-root)
# and the node agent (`python -m ovnvnet.cni.agent`, root with a few capabilities), plus the CNI
# shim that the agent's init step copies onto each node.
#
#   docker build -t ovnvnet:0.1.0 .
#
# tests/install/test_image.py replays the build steps that need no container engine.
ARG PYTHON_VERSION=3.11

# ---- build: the C shim (libc only, static so it runs on any node) and every Python wheel
FROM python:${PYTHON_VERSION}-bookworm AS build
WORKDIR /src
COPY cni/shim/ovn-k8s-cni-overlay.c cni/shim/
RUN mkdir -p /out/bin \
 && gcc -O2 -Wall -Wextra -Werror -std=c11 -static -o /out/bin/ovn-k8s-cni-overlay cni/shim/ovn-k8s-cni-overlay.c
COPY pyproject.toml ./
COPY operator/ operator/
# Wheels for the dependencies (some, like ovs, compile here where gcc is), not for ovnvnet itself:
# its source is copied as is below, so Tilt's live_update can sync operator/ovnvnet over it.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && rm -f /wheels/ovnvnet-*.whl

# ---- runtime: slim Python, the dependencies, the package source, the shim
FROM python:${PYTHON_VERSION}-slim-bookworm
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl
COPY --from=build /out/bin/ovn-k8s-cni-overlay /opt/ovnvnet/bin/ovn-k8s-cni-overlay
# Owned by the operator's user only so Tilt's live_update can sync into it; in a cluster the
# Deployment's readOnlyRootFilesystem keeps it read-only.
COPY --chown=65532:65532 operator/ovnvnet /app/ovnvnet
ENV PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
# The operator runs as this user; the agent's DaemonSet overrides it with root (it plumbs netns).
USER 65532:65532
EXPOSE 8080
CMD ["python", "-m", "ovnvnet"]
