#!/usr/bin/env bash
# Create a sandbox, run code in it with streamed output, and delete it.
set -euo pipefail
sandpit=${SANDPIT:-build/bin/sandpit}
id=$($sandpit create --template "${TEMPLATE:-default}" --memory 256Mi --timeout 120)
trap '$sandpit kill "$id"' EXIT
$sandpit exec "$id" -- python3 -c 'import time
for i in range(3):
    print("tick", i, flush=True); time.sleep(0.2)'
$sandpit exec "$id" -- sh -c 'echo "$(id -un) in $(pwd) on $(hostname)"'
