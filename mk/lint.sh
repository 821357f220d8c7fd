#!/usr/bin/env bash
# `make lint`: clang-tidy (config in .clang-tidy) over every C source; fails on a finding.
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(-std=gnu17 -D_GNU_SOURCE "-DSANDPIT_VERSION=\"$(cat VERSION)\"" -iquote lib/include -iquote node-agent/src -iquote node-agent/init
       -iquote cli/src -iquote gateway/src $(pkg-config --cflags json-c libmicrohttpd libcurl libcgroup libarchive yaml-0.1 libnl-3.0 libnl-route-3.0 libnftables))
mapfile -t files < <(ls lib/src/*.c node-agent/src/*.c node-agent/init/*.c cli/src/*.c \
                        operator/src/*.c gateway/src/*.c 2>/dev/null || true)
status=0
for f in "${files[@]}"; do
        if ! out=$(clang-tidy --quiet "$f" -- "${flags[@]}" 2>&1); then
                status=1
        fi
        if grep -qE 'warning:|error:' <<<"$out"; then
                printf '%s\n' "$out" | grep -vE '^[0-9]+ warnings? (generated|and)' >&2
                status=1
        fi
done
[ $status -eq 0 ] && echo "lint: ${#files[@]} files clean" >&2
exit $status
