#!/usr/bin/env bash
# `make bench`: sandpit beside bare runc/crun, in one run; prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
TEMPLATES=$(mktemp -d /tmp/sandpit-bench-templates.XXXXXX)
trap 'rm -rf "$TEMPLATES"' EXIT
mk/templates.sh host --dir "$TEMPLATES" >/dev/null
# The code-interpreter rows need python3 and node: the default template, when built.
# The E2B SDK rows: code-interpreter, which Sandbox.create()'s code-interpreter-v1 maps to.
for t in default code-interpreter; do
	if [ -d "/var/lib/sandpit/templates/$t" ]; then ln -s "/var/lib/sandpit/templates/$t" "$TEMPLATES/$t"; fi
done
echo "sandpit bench on $(nproc) cores, $(uname -r), runc $(runc --version | head -1 | awk '{print $3}')" >&2
/usr/bin/python3 bench/bench.py --templates-dir "$TEMPLATES" "$@"
# Density: 1,000 idle sandboxes, loopback-only and with --sandbox-cidr: memory, idle agent CPU,
# exec p50/p95, create time as the node fills, one-by-one delete (about 6 minutes on 2 cores).
/usr/bin/python3 bench/bench.py --templates-dir "$TEMPLATES" --only-density 1000
# The operator rows: the fixture API server, a cluster-mode agent, the operator.
/usr/bin/python3 bench/bench_operator.py --templates-dir "$TEMPLATES"
# The same on a real kube-apiserver + etcd, when KUBEBUILDER_ASSETS names the binaries
# (tests/README.md, make test-k8s).
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
	echo
	/usr/bin/python3 bench/bench_operator.py --templates-dir "$TEMPLATES" --server real
else
	echo "(operator on a real kube-apiserver: set KUBEBUILDER_ASSETS to measure it)" >&2
fi
# Images: pull + unpack beside skopeo + umoci, create from a cached image beside a directory.
/usr/bin/python3 bench/bench_images.py --templates-dir "$TEMPLATES"
# The E2B SDK's view through the gateway, beside the native API (needs node and the code-interpreter template).
/usr/bin/python3 bench/bench_gateway.py --templates-dir "$TEMPLATES"
# MCP: tools/call run_code('1+1') over stdio (`sandpit mcp`) and the gateway's /mcp.
/usr/bin/python3 bench/bench_mcp.py --templates-dir "$TEMPLATES"
