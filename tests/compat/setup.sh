#!/usr/bin/env bash
# Installs the E2B SDKs and the MCP SDK the compatibility tests drive, at pinned versions, into
# $SANDPIT_COMPAT_DIR (default /var/cache/sandpit/compat), one folder a release
# line: <dir>/<line>/node_modules. Idempotent: a line whose package.json
# already pins these versions is left alone. npm's configured registry is used.
set -euo pipefail

DIR="${SANDPIT_COMPAT_DIR:-/var/cache/sandpit/compat}"
# line name, then the packages at their pinned versions
LINES=(
	"v2.51|e2b@2.51.0 @e2b/code-interpreter@2.8.0"
	"v2.39|e2b@2.39.0 @e2b/code-interpreter@2.7.2"
	"mcp|@modelcontextprotocol/sdk@1.32.2"
)

if ! command -v npm >/dev/null 2>&1; then
	echo "sandpit: npm is needed for the compatibility tests (mk/deps.sh installs it)" >&2
	exit 1
fi
for entry in "${LINES[@]}"; do
	line=${entry%%|*}
	pkgs=${entry#*|}
	dest="$DIR/$line"
	stamp="$dest/.installed"
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pkgs" ] && [ -d "$dest/node_modules" ]; then
		continue
	fi
	echo "sandpit: installing $pkgs into $dest" >&2
	mkdir -p "$dest"
	[ -f "$dest/package.json" ] || echo '{"name":"sandpit-compat","private":true}' >"$dest/package.json"
	# shellcheck disable=SC2086
	(cd "$dest" && npm install --silent --no-audit --no-fund --save-exact $pkgs)
	echo "$pkgs" >"$stamp"
done
