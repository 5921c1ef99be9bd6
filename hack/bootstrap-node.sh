#!/usr/bin/env bash
# Idempotent bootstrap for the real node (issue 12): everything `make e2e-node` needs beyond
# `make bootstrap`.
#  - Debian packages: containerd + runc (the container runtime), buildah + debootstrap (building
#    the project's image from its Dockerfile without a registry), busybox-static (test pod image).
#  - kubelet + kube-scheduler 1.20.2 built once from Debian's `kubernetes` source package, exactly
#    as hack/bootstrap.sh builds kube-apiserver (vendored reflect2 replaced by Debian's 1.0.2,
#    GOPATH mode), cached OUTSIDE the checkout beside the API server
#    (default /var/cache/ovnvnet/kube-1.20.2/bin). The build runs under `nice -n 19`.
# Not part of `make bootstrap` yet: run it with `make node-bootstrap`.
set -euo pipefail
cache=${OVNVNET_CACHE:-/var/cache/ovnvnet}
kube_bin=$cache/kube-1.20.2/bin
log() { printf '[node-bootstrap] %s\n' "$*" >&2; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

apt_pkgs=(containerd runc buildah debootstrap busybox-static
          golang-go dpkg-dev rsync golang-github-modern-go-reflect2-dev)

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  # no system-wide containerd: the stack runs its own private one
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

want=(kubelet kube-scheduler)
todo=()
for b in "${want[@]}"; do [ -x "$kube_bin/$b" ] || todo+=("$b"); done
if [ ${#todo[@]} -gt 0 ]; then
  log "building ${todo[*]} 1.20.2 from Debian's source package (one time, ~5-10 min on 2 cores)"
  $SUDO mkdir -p "$cache"
  if [ ! -f /etc/apt/sources.list.d/ovnvnet-src.sources ]; then
    sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | $SUDO tee /etc/apt/sources.list.d/ovnvnet-src.sources >/dev/null
    $SUDO apt-get update -qq
  fi
  # a work dir of our own: hack/bootstrap.sh uses (and removes) $cache/src
  work=$cache/src-node
  $SUDO rm -rf "$work"; $SUDO mkdir -p "$work"
  (cd "$work" && $SUDO apt-get source -qq kubernetes >/dev/null 2>&1) || (cd "$work" && $SUDO apt-get source kubernetes)
  tree=$(ls -d "$work"/kubernetes-*/ | head -n1); tree=${tree%/}
  # vendored reflect2 1.0.1 faults at runtime with Go >= 1.18: take Debian's 1.0.2
  r2=$(dirname "$(find /usr/share/gocode/src -path '*modern-go/reflect2/reflect2.go' | head -n1)")
  vend=$tree/vendor/github.com/modern-go/reflect2
  $SUDO find "$vend" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) -delete
  for f in "$r2"/*.go "$r2"/*.s; do
    [ -e "$f" ] || continue
    case "$f" in *_test.go) continue;; esac
    $SUDO cp "$f" "$vend/"
  done
  $SUDO mkdir -p "$tree/.go/src/k8s.io"
  $SUDO ln -sfn "$tree" "$tree/.go/src/k8s.io/kubernetes"
  what=""
  for b in "${todo[@]}"; do what="$what cmd/$b"; done
  (
    cd "$tree"
    start=$(date +%s)
    GOPATH=$tree/.go CGO_ENABLED=0 GOPROXY=off GO111MODULE=off GOFLAGS=-mod=vendor \
      nice -n 19 make WHAT="${what# }" >"$work/build.log" 2>&1 &
    pid=$!
    while kill -0 $pid 2>/dev/null; do
      sleep 30; log "  still building${what}... $(( $(date +%s) - start ))s"
    done
    wait $pid || { tail -n 40 "$work/build.log" >&2; exit 1; }
    log "built${what} in $(( $(date +%s) - start ))s"
  )
  $SUDO mkdir -p "$kube_bin"
  for b in "${todo[@]}"; do
    # copy then rename: a concurrent reader never sees a half-written binary
    $SUDO cp "$tree/_output/bin/$b" "$kube_bin/.$b.tmp"
    $SUDO mv "$kube_bin/.$b.tmp" "$kube_bin/$b"
  done
  $SUDO rm -rf "$work"
  log "${todo[*]} cached in $kube_bin"
fi

for t in containerd runc ctr buildah debootstrap; do
  command -v "$t" >/dev/null || { log "missing $t after install"; exit 1; }
done
[ -x /bin/busybox ] || { log "missing /bin/busybox (busybox-static)"; exit 1; }
log "ready (kubelet: $kube_bin/kubelet, containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'))"
