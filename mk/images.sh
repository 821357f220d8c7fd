#!/usr/bin/env bash
# shellcheck disable=SC2317 # 0.9 takes every function for unreachable once main ends in exit
# Builds sandpit's container images with Debian's buildah (no Docker daemon, no
# registry): images/<name>/Containerfile over a root filesystem made here, as
# no base image can be pulled. docs/install.md ("Images") has the details.
#
#   sandpit-operator  the operator (the gateway is part of it): the binary and
#                     the shared libraries `ldd` names, /etc/passwd with the
#                     non-root user 65532, the CA bundle. No shell, no apt.
#   sandpit-agent     the agent, sandpit-init, the kernels, runc and crun (and
#                     sandpit-operator and the CLI: the chart's one image) over a
#                     Debian bookworm minbase (debootstrap) with python3 and
#                     bash, which the `host` template borrows through its /usr
#                     bind. Runs as root (privileged): it makes the sandboxes.
#   sandpit-test      the chart's `helm test` Pod: node (this machine's, with the
#                     libraries `ldd` names), the official `e2b` npm SDK at the
#                     version tests/compat pins (tests/compat/setup.sh) and
#                     images/test/helm-test.mjs; user 65532, no shell, no apt.
#
# Each image is left in buildah's storage (<cache>/buildah) as localhost/<name>:<VERSION> and
# written as an OCI layout, build/images/<name> (tag <VERSION>), which
# `umoci unpack` or `skopeo copy oci:build/images/<name>:<VERSION> docker://...`
# read. VERSION is the file at the top of the repository.
#
# Usage: mk/images.sh [--out DIR] [--cache DIR] [--force-base] [-v] operator|agent|test|all...
#   --out DIR     the layouts (default build/images)
#   --cache DIR   where the agent's base root filesystem, the test image's
#                 node_modules and buildah's storage are kept between builds (default $SANDPIT_IMAGE_CACHE, else
#                 /var/lib/sandpit/image-base)
#   --force-base  rebuild the agent's base even if it is cached
#   -v            show debootstrap and buildah output on stderr
#
# The agent's base (debootstrap, a minute or two) is built once per machine and
# package list, like the `default` template (mk/templates.sh): into a
# <name>.tmp-<pid> directory renamed into place when complete.
set -euo pipefail

cd "$(dirname "$0")/.."
readonly SUITE=bookworm
# What sandpit-agent links (ldd build/bin/sandpit-agent), the OCI runtimes, and
# what the `host` template's sandboxes run from the image's /usr; curl, which
# the `helm test` Pod used before it had the sandpit-test image (kept for now:
# the list is the cached base's key, and a changed list builds a new base).
readonly AGENT_PACKAGES=(
	libjson-c5 libmicrohttpd12 libcurl4 libcgroup2 libarchive13 libyaml-0-2
	libnl-3-200 libnl-route-3-200 libnftables1 libssl3 ca-certificates
	runc crun
	python3 bash
	curl
)
readonly OPERATOR_UID=65532

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
now_s() { date +%s; }

out=build/images
cache=${SANDPIT_IMAGE_CACHE:-/var/lib/sandpit/image-base}
force_base=0
verbose=0
names=()
while [ $# -gt 0 ]; do
	case $1 in
	--out) [ $# -ge 2 ] || die "--out needs an argument"; out=$2; shift ;;
	--cache) [ $# -ge 2 ] || die "--cache needs an argument"; cache=$2; shift ;;
	--force-base) force_base=1 ;;
	-v | --verbose) verbose=1 ;;
	-h | --help) usage; exit 0 ;;
	all) names+=(operator agent test) ;;
	operator | agent | test) names+=("$1") ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
	shift
done
[ ${#names[@]} -gt 0 ] || { usage >&2; die "name an image: operator, agent, test or all"; }
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap; buildah's vfs storage keeps file owners)"
command -v buildah >/dev/null || die "buildah is missing (mk/deps.sh installs it)"
version=$(tr -d ' \n' <VERSION)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || die "VERSION: not a version: $version"
for b in sandpit-operator sandpit-agent sandpit-init; do
	[ -x "build/bin/$b" ] || die "build/bin/$b is missing: make all first"
done
mkdir -p "$out" "$cache"
out=$(realpath -- "$out")
cache=$(realpath -- "$cache")
log_file=$out/build.log
: >"$log_file"

run_logged() {
	if [ "$verbose" -eq 1 ]; then
		"$@" 2>&1 | tee -a "$log_file" >&2
	else
		"$@" >>"$log_file" 2>&1 || { tail -n 30 "$log_file" >&2; return 1; }
	fi
}

# buildah with a storage of our own, vfs: it works on any host (no overlay
# mount inside a container, no fuse-overlayfs) and the images only take COPY
# and ADD steps, so no RUN container is ever started. Beside the cache, not in
# build/: its unpacked Debian trees hold directories such as etc/rc2.d, which
# the Makefile's search for dependency files (*.d) must not meet.
BUILDAH=(buildah --root "$cache/buildah" --runroot /run/sandpit-buildah --storage-driver vfs)

# Removes the temp dirs of a failed build.
TMPS=()
cleanup() {
	local t
	for t in "${TMPS[@]}"; do rm -rf --one-file-system -- "$t"; done
}
trap cleanup EXIT

# ---------------------------------------------------------------- operator

# Copies FILE and the shared libraries it needs into ROOT at their own paths
# (symlinks resolved; the merged-/usr links lib and lib64 are made by the
# caller).
copy_with_libs() { # root file
	local root=$1 f=$2 lib real
	install -D -m 0755 "$f" "$root/usr/local/bin/$(basename "$f")"
	while read -r lib; do
		real=$(realpath -- "$lib")
		# its own mode: ld-linux must stay executable
		install -D -m "$(stat -c %a "$real")" "$real" "$root$(realpath -- "$(dirname "$lib")")/$(basename "$lib")"
	done < <(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# A root filesystem in ROOT with FILE (in /usr/local/bin) and the libraries it
# links, /etc/passwd and /etc/group with the non-root user, nsswitch.conf, the
# CA bundle and /tmp: all a dynamically linked program needs, no shell.
minimal_root() { # root file
	local r=$1
	mkdir -p "$r"/usr/lib "$r"/usr/lib64 "$r"/etc "$r"/tmp "$r"/etc/ssl/certs
	ln -s usr/lib "$r/lib"
	ln -s usr/lib64 "$r/lib64"
	ln -s usr/bin "$r/bin"
	mkdir -p "$r/usr/bin"
	chmod 1777 "$r/tmp"
	copy_with_libs "$r" "$2"
	printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:%d:%d:nonroot:/nonexistent:/usr/sbin/nologin\n' \
		"$OPERATOR_UID" "$OPERATOR_UID" >"$r/etc/passwd"
	printf 'root:x:0:\nnonroot:x:%d:\n' "$OPERATOR_UID" >"$r/etc/group"
	printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
	[ -s /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt is missing (ca-certificates)"
	cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
}

stage_operator() { # ctx
	local ctx=$1 r=$1/rootfs
	minimal_root "$r" build/bin/sandpit-operator
	rm "$r/usr/local/bin/sandpit-operator" # the binary comes in a layer of its own
	tar --numeric-owner --owner=0 --group=0 -C "$r" -cf "$ctx/rootfs.tar" .
	rm -rf "$r"
	mkdir -p "$ctx/bin"
	install -m 0755 build/bin/sandpit-operator "$ctx/bin/"
}

# ---------------------------------------------------------------- agent base

# The mirror of the host's bookworm (apt's own sources), else debootstrap's.
host_mirror() {
	# shellcheck disable=SC2016 # apt's format, not a shell expansion
	apt-get indextargets --format '$(URI)' 'Created-By: Packages' 2>/dev/null |
		sed -n "s#/dists/$SUITE/main/.*##p" | head -n 1
}

# Prints the path of the agent base tarball, building it if it is not cached.
# Its name carries a hash of the suite and the package list, so a changed list
# builds a new one.
agent_base() {
	local key dir tmp r mirror t0
	key=$(printf '%s\n' "$SUITE" "${AGENT_PACKAGES[@]}" | sha256sum | cut -c1-12)
	dir=$cache/agent-$SUITE-$key
	if [ -s "$dir/rootfs.tar" ] && [ "$force_base" -eq 0 ]; then
		echo "$dir/rootfs.tar"
		return
	fi
	command -v debootstrap >/dev/null || die "debootstrap is missing (mk/deps.sh installs it)"
	mkdir -p "$cache"
	tmp=$dir.tmp-$$
	TMPS+=("$tmp")
	r=$tmp/rootfs
	mkdir -p "$r"
	mirror=$(host_mirror)
	t0=$(now_s)
	log "agent base: debootstrap --variant=minbase $SUITE ${mirror:-(its default mirror)} + ${AGENT_PACKAGES[*]}"
	# --include: the packages come in the same run, so no chroot, no mounts
	# and no apt-get inside the rootfs are needed.
	# shellcheck disable=SC2086 # $mirror is one word or none
	run_logged debootstrap --variant=minbase --include="$(
		IFS=,
		echo "${AGENT_PACKAGES[*]}"
	)" "$SUITE" "$r" $mirror
	# Smaller: no docs, manuals, locales or apt lists; /dev is runc's.
	rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
		"$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old "$r"/var/log/* \
		"$r"/tmp/* "$r"/var/tmp/* "${r:?}"/dev/*
	rm -f "$r/etc/resolv.conf" "$r/etc/hostname"
	for b in runc crun python3 bash; do
		[ -x "$r/usr/bin/$b" ] || [ -x "$r/usr/sbin/$b" ] || die "agent base: $b is not in the rootfs"
	done
	tar --numeric-owner -C "$r" -cf "$tmp/rootfs.tar" .
	rm -rf --one-file-system "$r"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	log "agent base: built in $(($(now_s) - t0)) s: $dir"
	echo "$dir/rootfs.tar"
}

stage_agent() { # ctx
	local ctx=$1 base
	base=$(agent_base)
	ln "$base" "$ctx/rootfs.tar" 2>/dev/null || cp "$base" "$ctx/rootfs.tar"
	mkdir -p "$ctx/bin" "$ctx/kernels"
	# sandpit-operator too: the chart runs both components from one image
	# (image.repository) until it has one per component.
	install -m 0755 build/bin/sandpit-agent build/bin/sandpit-init build/bin/sandpit \
		build/bin/sandpit-operator "$ctx/bin/"
	cp -r build/share/sandpit/kernels/. "$ctx/kernels/"
	rm -rf "$ctx/kernels/__pycache__"
}

# ---------------------------------------------------------------- test

# The `e2b` version tests/compat pins (its first release line): one place.
e2b_version() {
	local v
	v=$(grep -o -m 1 '"[^"|]*|e2b@[0-9][0-9.]*' tests/compat/setup.sh | sed 's/.*e2b@//')
	[[ $v =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "tests/compat/setup.sh: no e2b@VERSION in its LINES"
	echo "$v"
}

# Prints the directory holding node_modules with `e2b` at VERSION and its
# dependencies (no dev ones), installing it with npm (its configured registry,
# its cache) if it is not cached: <name>.tmp-<pid> renamed into place.
test_modules() { # version
	local v=$1 dir tmp t0
	dir=$cache/test-e2b-$v
	if [ -d "$dir/node_modules/e2b" ] && [ "$force_base" -eq 0 ]; then
		echo "$dir"
		return
	fi
	command -v npm >/dev/null || die "npm is missing (mk/deps.sh installs nodejs)"
	tmp=$dir.tmp-$$
	TMPS+=("$tmp")
	mkdir -p "$tmp"
	echo '{"name":"sandpit-test","private":true}' >"$tmp/package.json"
	t0=$(now_s)
	log "test image: npm install e2b@$v"
	(cd "$tmp" && run_logged npm install --prefer-offline --omit=dev --no-audit --no-fund --save-exact "e2b@$v")
	rm -rf "$dir"
	mv "$tmp" "$dir"
	log "test image: e2b@$v in $(($(now_s) - t0)) s: $dir"
	echo "$dir"
}

stage_test() { # ctx
	local ctx=$1 r=$1/rootfs v mods node lib=/usr/local/lib/sandpit-test
	node=$(command -v node) || die "node is missing (mk/deps.sh installs nodejs)"
	v=$(e2b_version)
	mods=$(test_modules "$v")
	minimal_root "$r" "$(realpath -- "$node")"
	mkdir -p "$r$lib"
	cp -a "$mods/node_modules" "$mods/package.json" "$r$lib/"
	install -m 0644 images/test/helm-test.mjs "$r$lib/"
	# this node loads this SDK, and is one its `engines` names (>=20.18.1 <21
	# || >=22 for the 2.x lines tests/compat pins; npm only warns)
	(cd "$r$lib" && "$r/usr/local/bin/node" --input-type=module -e "
		import { Sandbox } from 'e2b'
		const [a, b, c] = process.versions.node.split('.').map(Number)
		const ok = (a === 20 && (b > 18 || (b === 18 && c >= 1))) || a >= 22
		if (typeof Sandbox.create !== 'function' || !ok) process.exit(1)") ||
		die "test image: node $("$node" --version) cannot run e2b@$v (it wants node >= 20.18.1 <21 or >= 22)"
	tar --numeric-owner --owner=0 --group=0 -C "$r" -cf "$ctx/rootfs.tar" .
	rm -rf "$r"
}

# ---------------------------------------------------------------- build

build_image() { # operator|agent
	local what=$1 name=sandpit-$1 ctx t0 layout
	t0=$(now_s)
	ctx=$out/ctx-$what
	rm -rf "$ctx"
	mkdir -p "$ctx"
	TMPS+=("$ctx")
	"stage_$what" "$ctx"
	log "$name: buildah bud images/$what/Containerfile"
	run_logged "${BUILDAH[@]}" bud --layers=false --format oci --build-arg "VERSION=$version" \
		-f "images/$what/Containerfile" -t "localhost/$name:$version" "$ctx"
	layout=$out/$name
	rm -rf "$layout"
	run_logged "${BUILDAH[@]}" push "localhost/$name:$version" "oci:$layout:$version"
	# Only the tagged image stays in buildah's storage.
	"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
	rm -rf "$ctx"
	log "$name:$version: $(du -sh "$layout" | cut -f1) in $layout, $(($(now_s) - t0)) s"
}

main() {
	local n
	for n in "${names[@]}"; do
		build_image "$n"
	done
}

# One call at the end: bash has read the whole file before anything runs, so
# editing it during a build cannot break that build.
main; exit
