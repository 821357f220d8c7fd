#!/usr/bin/env bash
# `make run`: the main job in local mode. Starts a standalone agent (unless one
# already answers on the socket), creates a sandbox, runs Python in it, deletes
# it, and stops the agent it started. Uses the `default` template when it has
# been built (`make rootfs`), else the instant `host` template.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=build/bin
SOCK=${SANDPIT_SOCKET:-/run/sandpit/agent.sock}
export SANDPIT_URL="unix://$SOCK"
TEMPLATES=${SANDPIT_TEMPLATES_DIR:-/var/lib/sandpit/templates}

if [ "$(id -u)" -ne 0 ]; then
        echo "sandpit: make run needs root (runc, cgroups and mounts)" >&2
        exit 1
fi

mk/templates.sh host --dir "$TEMPLATES" >/dev/null 2>&1 || mk/templates.sh host --dir "$TEMPLATES"
TEMPLATE=${TEMPLATE:-}
if [ -z "$TEMPLATE" ]; then
        if [ -f "$TEMPLATES/default/template.json" ]; then
                TEMPLATE=default
        else
                TEMPLATE=host
                echo "sandpit: using the 'host' template (run 'make rootfs' once for the full Debian one)" >&2
        fi
fi

agent_pid=
cleanup() {
        if [ -n "$agent_pid" ]; then
                kill -TERM "$agent_pid" 2>/dev/null || true
                wait "$agent_pid" 2>/dev/null || true
        fi
}
trap cleanup EXIT

if ! "$BIN/sandpit" ls >/dev/null 2>&1; then
        mkdir -p build
        "$BIN/sandpit-agent" --standalone --socket "$SOCK" --templates-dir "$TEMPLATES" \
                --log-format text 2>build/agent-run.log &
        agent_pid=$!
        for _ in $(seq 100); do
                "$BIN/sandpit" ls >/dev/null 2>&1 && break
                kill -0 "$agent_pid" 2>/dev/null || { cat build/agent-run.log >&2; exit 1; }
                sleep 0.05
        done
        echo "sandpit: agent started (log: build/agent-run.log)" >&2
fi

echo "sandpit: sandbox from template '$TEMPLATE' running Python:" >&2
"$BIN/sandpit" run --template "$TEMPLATE" --memory 256Mi --cpu 1 -- \
        python3 -c '
import os, platform, socket
print(f"hello from sandbox {socket.gethostname()}")
print(f"python {platform.python_version()} as uid {os.getuid()} in {os.getcwd()}")
print(f"sum of squares below 10^6: {sum(i * i for i in range(10**6))}")
'
