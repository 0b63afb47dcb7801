#!/usr/bin/env bash
# Prints the path of a pilot-discovery (istiod) binary for the e2e test, building it once per
# version from the Go module proxy into a cache directory and reusing it afterwards.
#
# The pinned version panics at start-up without a Kubernetes client (a nil multicluster
# controller in the ServiceEntry controller); serviceentry-nil-multicluster.patch guards it.
# The module source is copied out of the module cache, patched and built in the copy.
#
#   ISTIO_VERSION      module version of istio.io/istio (default below)
#   PILOT_CACHE        cache directory (default: $(go env GOPATH)/cache/meshgate-pilot)
#   PILOT_DISCOVERY    use this binary instead (printed as is)
set -euo pipefail
GO=${GO:-go}
ISTIO_VERSION=${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}
here=$(cd "$(dirname "$0")" && pwd)
if [[ -n "${PILOT_DISCOVERY:-}" ]]; then echo "$PILOT_DISCOVERY"; exit 0; fi
cache=${PILOT_CACHE:-$($GO env GOPATH)/cache/meshgate-pilot}
patchsum=$(sha256sum "$here/serviceentry-nil-multicluster.patch" | cut -c1-12)
out="$cache/$ISTIO_VERSION-$patchsum/pilot-discovery"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi
mkdir -p "$(dirname "$out")"
start=$(date +%s)
dir=$(cd / && GOFLAGS= $GO mod download -json "istio.io/istio@$ISTIO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d "$dir" ]] || { echo "pilot-discovery.sh: go mod download istio.io/istio@$ISTIO_VERSION gave no directory" >&2; exit 1; }
src=$(mktemp -d "${TMPDIR:-/tmp}/istio-src.XXXXXX")
trap 'rm -rf "$src"' EXIT
cp -r "$dir/." "$src/"
chmod -R u+w "$src"
patch -s -p1 -d "$src" < "$here/serviceentry-nil-multicluster.patch"
echo "pilot-discovery.sh: building istio.io/istio@$ISTIO_VERSION pilot-discovery (cold: 5–20 min on 2 cores depending on load, ~3 GB RAM)" >&2
(cd "$src" && GOWORK=off GOFLAGS=-mod=mod $GO build -o "$out.tmp" ./pilot/cmd/pilot-discovery)
mv "$out.tmp" "$out"
echo "pilot-discovery.sh: built in $(( $(date +%s) - start ))s: $out" >&2
echo "$out"
