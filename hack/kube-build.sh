# shellcheck shell=bash
# Sourced by hack/bootstrap.sh and hack/bootstrap-node.sh: ONE way to build Kubernetes 1.20.2
# binaries from Debian's `kubernetes` source package and cache them OUTSIDE the checkout.
#
#   kube_build DIR CMD...      e.g. kube_build "$kube_bin" kube-apiserver kube-controller-manager
#
# Builds only the CMDs missing from DIR (none missing: returns at once, nothing else runs), in
# GOPATH mode with the vendored tree (no network), the vendored reflect2 1.0.1 replaced by
# Debian's 1.0.2 (1.0.1 faults at runtime with Go >= 1.18), under `nice -n 19`. Each binary is
# copied then renamed into DIR, so a concurrent reader never sees half a file. Concurrent callers
# are serialised by a lock file beside DIR; each build has its own work directory, removed after.
# Needs: golang-go dpkg-dev golang-github-modern-go-reflect2-dev, and $SUDO and log() from the caller.
kube_build() {
  local dir=$1; shift
  local todo=() b
  for b in "$@"; do [ -x "$dir/$b" ] || todo+=("$b"); done
  [ ${#todo[@]} -eq 0 ] && return 0
  $SUDO mkdir -p "$dir"
  exec {kube_lock}>"$dir/../.build.lock"
  flock "$kube_lock"
  todo=()
  for b in "$@"; do [ -x "$dir/$b" ] || todo+=("$b"); done   # another caller may have built them
  if [ ${#todo[@]} -eq 0 ]; then exec {kube_lock}>&-; return 0; fi
  log "building ${todo[*]} 1.20.2 from Debian's source package (one time: ~5 min each on 2 idle cores)"
  if [ ! -f /etc/apt/sources.list.d/ovnvnet-src.sources ]; then
    sed -e 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | $SUDO tee /etc/apt/sources.list.d/ovnvnet-src.sources >/dev/null
    $SUDO apt-get update -qq
  fi
  local work; work=$($SUDO mktemp -d "$dir/../src.XXXXXX")
  (cd "$work" && $SUDO apt-get source -qq kubernetes >/dev/null 2>&1) || (cd "$work" && $SUDO apt-get source kubernetes)
  local tree; tree=$(ls -d "$work"/kubernetes-*/ | head -n1); tree=${tree%/}
  local r2; r2=$(dirname "$(find /usr/share/gocode/src -path '*modern-go/reflect2/reflect2.go' | head -n1)")
  local vend=$tree/vendor/github.com/modern-go/reflect2 f
  $SUDO find "$vend" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) -delete
  for f in "$r2"/*.go "$r2"/*.s; do
    [ -e "$f" ] || continue
    case "$f" in *_test.go) continue;; esac
    $SUDO cp "$f" "$vend/"
  done
  $SUDO mkdir -p "$tree/.go/src/k8s.io"
  $SUDO ln -sfn "$tree" "$tree/.go/src/k8s.io/kubernetes"
  local what=""
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
  ) || { exec {kube_lock}>&-; return 1; }
  for b in "${todo[@]}"; do
    $SUDO cp "$tree/_output/bin/$b" "$dir/.$b.tmp"
    $SUDO mv "$dir/.$b.tmp" "$dir/$b"
  done
  $SUDO rm -rf "$work"
  exec {kube_lock}>&-
  log "${todo[*]} cached in $dir"
}
