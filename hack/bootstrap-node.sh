#!/usr/bin/env bash
# Idempotent bootstrap for the real node (issue 12): everything `make e2e-node` needs beyond
# `make bootstrap`.
#  - Debian packages: containerd + runc (the container runtime), buildah + debootstrap (building
#    the project's image from its Dockerfile without a registry), busybox-static (test pod image).
#  - kubelet + kube-scheduler 1.20.2 built once from Debian's `kubernetes` source package by
#    hack/kube-build.sh, the same function hack/bootstrap.sh builds kube-apiserver with, cached
#    OUTSIDE the checkout beside the API server (default /var/cache/ovnvnet/kube-1.20.2/bin).
# Run by `make node-bootstrap` and by `make test` (hence .ci/run): with everything in place it
# only checks (well under a second) and changes nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${OVNVNET_CACHE:-/var/cache/ovnvnet}
kube_bin=$cache/kube-1.20.2/bin
log() { printf '[node-bootstrap] %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

apt_pkgs=(containerd runc buildah debootstrap busybox-static
          golang-go dpkg-dev rsync golang-github-modern-go-reflect2-dev)

# shellcheck source=hack/apt.sh
. "$here/hack/apt.sh"
apt_install "${apt_pkgs[@]}"

# shellcheck source=hack/kube-build.sh
. "$here/hack/kube-build.sh"
kube_build "$kube_bin" kubelet kube-scheduler

for t in containerd runc ctr buildah debootstrap; do
  command -v "$t" >/dev/null || { log "missing $t after install"; exit 1; }
done
[ -x /bin/busybox ] || { log "missing /bin/busybox (busybox-static)"; exit 1; }
log "ready (kubelet: $kube_bin/kubelet, containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'))"
