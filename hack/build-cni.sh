#!/usr/bin/env bash
# Build the CNI side's native programs into build/ (idempotent; prints the output paths):
#   build/ovn-k8s-cni-overlay   the node's CNI executable (C, libc only), forwards to the agent
#   build/ovnvnet-cni-runtime   a libcni-driven "container runtime" for tests and the demo
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${OVNVNET_BUILD_DIR:-$here/build}
mkdir -p "$out"

shim_src=$here/cni/shim/ovn-k8s-cni-overlay.c
shim=$out/ovn-k8s-cni-overlay
if [ ! -x "$shim" ] || [ "$shim_src" -nt "$shim" ]; then
  gcc -O2 -Wall -Wextra -Werror -std=c11 -o "$shim.tmp.$$" "$shim_src"
  mv -f "$shim.tmp.$$" "$shim"
fi

# libcni from Debian's golang-github-appc-cni-dev, built in GOPATH mode (no module proxy).
rt_src=$here/cni/runtime/main.go
rt=$out/ovnvnet-cni-runtime
if [ ! -x "$rt" ] || [ "$rt_src" -nt "$rt" ]; then
  gopath=$out/.gopath
  mkdir -p "$gopath/src/ovnvnet/cni-runtime" "$out/.gocache"
  cp "$rt_src" "$gopath/src/ovnvnet/cni-runtime/main.go"
  (cd "$gopath/src/ovnvnet/cni-runtime" &&
    GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$out/.gocache" GOPROXY=off \
      CGO_ENABLED=0 go build -o "$rt.tmp.$$" .)
  mv -f "$rt.tmp.$$" "$rt"
fi
echo "$shim"
echo "$rt"
