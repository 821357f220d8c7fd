#!/usr/bin/env bash
# shellcheck disable=SC2317 # 0.9 takes every function for unreachable once main ends in exit
# Builds sandpit's local sandbox templates. A template is a read-only directory
# that the agent uses as the lower layer of each sandbox's overlayfs root:
#
#   <templates_dir>/<name>/rootfs/         the lower layer
#   <templates_dir>/<name>/template.json   {"name", "binds", "user", "languages"}
#
# Three templates are built here (docs/templates.md has the details):
#   host     a skeleton rootfs that borrows the host's /usr through "binds";
#            builds in under a second, for tests.
#   default  a real Debian bookworm rootfs (debootstrap) with python3 + numpy,
#            pandas, matplotlib, pip, nodejs, npm, git, curl; takes minutes,
#            built once per machine.
#   code-interpreter
#            default + R, Java (JShell) and TypeScript, built from
#            templates/code-interpreter/Dockerfile by sandpit's own builder
#            (a standalone agent of this script's, from build/bin or
#            $SANDPIT_BIN); builds default first when needed.
#
# Usage: mk/templates.sh [--dir DIR] [--force] [--check] [-v] host|default|code-interpreter|all...
#   --dir DIR  templates directory (default $SANDPIT_TEMPLATES_DIR, else
#              /var/lib/sandpit/templates)
#   --force    rebuild even if the template is already complete
#   --check    only run the smoke check of already built templates
#   -v         show debootstrap/apt output on stderr, not only in the log
#
# A complete template built from the current inputs (the package list, the
# Dockerfile and its context: "inputs" in its template.json) is left alone;
# one built from other inputs is rebuilt. A build goes into <name>.tmp-<pid> beside
# the final directory and is renamed into place only after its smoke check
# passed, so a half-built template never exists under its name.
set -euo pipefail

readonly SUITE=bookworm
readonly TEMPLATE_USER=user
readonly TEMPLATE_UID=1000
# What a code-interpreter user expects, and what E2B's SDK and users run in a
# sandbox: git (sandbox.git.* runs it through commands), curl, pip and npm
# install at run time (npm brings a few hundred small node-* packages).
# python3-munkres satisfies matplotlib's fonttools dependency "python3-scipy |
# python3-munkres", which apt would otherwise meet with scipy, whose hard
# dependency pythran brings g++, Boost and the Python headers (about +700 MB).
readonly DEFAULT_PACKAGES=(
	bash coreutils procps ca-certificates tzdata
	python3 python3-pip python3-numpy python3-pandas python3-matplotlib
	python3-munkres
	nodejs npm git curl
)
# Host directories that are either merged-/usr symlinks or real directories
# that the host template must bind from the host.
readonly TOP_DIRS=(bin sbin lib lib32 lib64 libx32)
readonly CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'templates: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

# Microseconds since the epoch, for timings that are well under a second.
now_us() { echo "${EPOCHREALTIME/./}"; }
elapsed() { # start_us -> "1.234s"
	local us=$(($(now_us) - $1))
	printf '%d.%03ds' $((us / 1000000)) $((us % 1000000 / 1000))
}

# ---------------------------------------------------------------- arguments

orig_args=("$@")
dir=${SANDPIT_TEMPLATES_DIR:-/var/lib/sandpit/templates}
force=0
check_only=0
verbose=0
names=()
while [ $# -gt 0 ]; do
	case $1 in
	--dir) [ $# -ge 2 ] || die "--dir needs an argument"; dir=$2; shift ;;
	--dir=*) dir=${1#--dir=} ;;
	-f | --force) force=1 ;;
	--check) check_only=1 ;;
	-v | --verbose) verbose=1 ;;
	-h | --help) usage; exit 0 ;;
	all) names+=(host default code-interpreter) ;;
	host | default | code-interpreter) names+=("$1") ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
	shift
done
[ ${#names[@]} -gt 0 ] || { usage >&2; die "name a template: host, default, code-interpreter or all"; }
# Each name once, `default` before `code-interpreter`, which is built FROM it.
ordered=()
for n in host default code-interpreter; do
	if [[ " ${names[*]} " == *" $n "* ]]; then ordered+=("$n"); fi
done
names=("${ordered[@]}")
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SANDPIT_BIN:-$REPO/build/bin}
CI_SRC=$REPO/templates/code-interpreter
# Absolute and symlink-free: the path is compared against /proc/self/mountinfo
# and used as a chroot.
dir=$(realpath -m -- "$dir")
is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1
# code-interpreter may have to build default first.
if [[ " ${names[*]} " == *" default "* || " ${names[*]} " == *" code-interpreter "* ]]; then
	[ "$is_root" -eq 1 ] || die "default, code-interpreter: must run as root (debootstrap, chroot, mounts)"
	[ "$check_only" -eq 1 ] || command -v debootstrap >/dev/null ||
		die "default: debootstrap is missing (mk/deps.sh installs it)"
fi

# Building or checking `default` mounts proc/sys/dev inside the rootfs. Do it
# in a private mount namespace of our own, so that even if this script is
# killed with SIGKILL no mount is left behind on the host: the namespace dies
# with the process. The cleanup trap below unmounts anyway, for hosts where
# unshare is unavailable.
if [[ " ${names[*]} " == *" default "* || " ${names[*]} " == *" code-interpreter "* ]] &&
	[ "$is_root" -eq 1 ] &&
	[ -z "${SANDPIT_TEMPLATES_PRIVATE_NS:-}" ] &&
	unshare --mount --propagation private true 2>/dev/null; then
	export SANDPIT_TEMPLATES_PRIVATE_NS=1
	exec unshare --mount --propagation private -- "$BASH" "$0" "${orig_args[@]}"
fi

# ---------------------------------------------------------------- mounts and cleanup

# Mount points (under some rootfs) that this process mounted, in order.
MOUNTS=()
# The temp build directory, removed by the exit trap if the build failed.
BUILD_TMP=""
LOG=/dev/null

# Prints the mount points at or below $1, as this process sees them.
mounts_under() {
	awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo
}

chroot_mount() { # rootfs
	local r=$1
	# Each mount is recorded only once it succeeded; a failure stops the
	# script (set -e) and the exit trap undoes the ones before it.
	mount -t proc proc "$r/proc"
	MOUNTS+=("$r/proc")
	# A fresh sysfs where allowed; a plain (non-recursive) bind otherwise.
	mount -t sysfs -o ro sysfs "$r/sys" 2>/dev/null || mount --bind /sys "$r/sys"
	MOUNTS+=("$r/sys")
	# Non-recursive binds, so that one umount each undoes them.
	mount --bind /dev "$r/dev"
	MOUNTS+=("$r/dev")
	if [ -d /dev/pts ] && [ -d "$r/dev/pts" ]; then
		mount --bind /dev/pts "$r/dev/pts"
		MOUNTS+=("$r/dev/pts")
	fi
}

chroot_umount() {
	local i m
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${MOUNTS[i]}
		umount "$m" 2>/dev/null || umount -l "$m" || log "warning: could not unmount $m"
	done
	MOUNTS=()
}

# rm -rf, but never through a mount: a bind of the host's /dev inside a
# half-built rootfs must not be emptied. --one-file-system is a second guard.
safe_rm() { # path
	local m
	m=$(mounts_under "$1")
	if [ -n "$m" ]; then
		log "not removing $1: still mounted there: $m"
		return 1
	fi
	rm -rf --one-file-system -- "$1"
}

on_exit() {
	local rc=$? m
	stop_build_agent
	chroot_umount
	if [ -n "$BUILD_TMP" ] && [ -e "$BUILD_TMP" ]; then
		# Whatever a killed debootstrap may have left mounted in our tree,
		# deepest first.
		for m in $(mounts_under "$BUILD_TMP" | sort -r); do umount -l "$m" || true; done
		log "removing the unfinished $BUILD_TMP"
		safe_rm "$BUILD_TMP" || rc=1
	fi
	if [ "$rc" -ne 0 ]; then
		log "failed (exit $rc)${BUILD_LOG_NOTE:-}"
	fi
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command with its output going to the build log ($LOG), and to stderr
# too with -v. On failure shows the end of the log.
run_logged() {
	if [ "$verbose" -eq 1 ]; then
		"$@" 2>&1 | tee -a "$LOG" >&2
		return
	fi
	if ! "$@" >>"$LOG" 2>&1; then
		log "failed: $*"
		tail -n 30 "$LOG" | sed 's/^/    /' >&2
		return 1
	fi
}

# Runs a command inside the rootfs as root with a clean environment.
in_chroot() { # rootfs cmd...
	local r=$1
	shift
	chroot "$r" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LC_ALL=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}

# ---------------------------------------------------------------- helpers

json_array() { # items... -> ["a", "b"]
	local out="" x
	for x in "$@"; do out+="${out:+, }\"$x\""; done
	printf '[%s]' "$out"
}

write_template_json() { # file name user languages-json binds-json [inputs]
	printf '{"name": "%s", "binds": %s, "user": "%s", "languages": %s%s}\n' \
		"$2" "$5" "$3" "$4" "${6:+, \"inputs\": \"$6\"}" >"$1"
}

# Where the host's Debian archive is: prints "URI SUITE" for each enabled
# `deb` entry with component main of this machine's apt sources, deb822
# (*.sources) and one-line (*.list) alike. Third-party repositories rarely
# have a "main" component for a Debian suite name; those that do are still
# filtered out by the suite names the callers ask for.
host_apt_entries() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
			function flush(  nu, ns, u, s, i, j) {
				if (f["types"] ~ /(^|[ \t])deb([ \t]|$)/ && tolower(f["enabled"]) !~ /no/ &&
				    f["components"] ~ /(^|[ \t])main([ \t]|$)/) {
					nu = split(f["uris"], u, /[ \t]+/)
					ns = split(f["suites"], s, /[ \t]+/)
					for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
						if (u[i] != "" && s[j] != "") print u[i], s[j]
				}
				delete f
				key = ""
			}
			/^#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]/ { if (key != "") f[key] = f[key] " " $0; next }
			{
				c = index($0, ":")
				key = tolower(substr($0, 1, c - 1))
				f[key] = substr($0, c + 1)
			}
			END { flush() }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '
			$1 != "deb" { next }
			{
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				uri = $i; suite = $(i + 1)
				for (k = i + 2; k <= NF; k++) if ($k == "main") { print uri, suite; next }
			}' "$f"
	done
}

# What a template is built from, as "sha256:<hex>": recorded in its
# template.json ("inputs") and compared on every run, so that a cached template
# built from another package list or Dockerfile is rebuilt. `host` has none: it
# is rebuilt only with --force (it takes under a second).
template_inputs() { # name
	case $1 in
	default)
		printf '%s\n' "$SUITE" "$TEMPLATE_USER" "$TEMPLATE_UID" "${DEFAULT_PACKAGES[@]}" |
			sha256sum | sed 's/^/sha256:/; s/ .*//'
		;;
	code-interpreter)
		# default's inputs and every file of its build context.
		{
			template_inputs default
			(cd "$CI_SRC" && find . -type f | LC_ALL=C sort | xargs -d '\n' sha256sum)
		} | sha256sum | sed 's/^/sha256:/; s/ .*//'
		;;
	esac
}

# The "inputs" a template.json records (empty without).
recorded_inputs() { # template.json
	local json=""
	read -r -d '' json <"$1" || true
	[[ $json =~ \"inputs\":\ \"([^\"]*)\" ]] && echo "${BASH_REMATCH[1]}"
	return 0
}

# The rootfs is complete when it has a rootfs/ and a template.json: the build
# writes both into the temp directory before the rename.
is_complete() { [ -d "$1/rootfs" ] && [ -s "$1/template.json" ]; }

# True if some overlay mounted (as this process sees it) uses $1 as a lower
# layer: replacing that directory under a live overlay is undefined behaviour.
in_use_as_lowerdir() {
	awk -v p="$1" '
		/ - overlay / {
			n = split($NF, o, /[=:,]/)
			for (i = 1; i <= n; i++) if (o[i] == p) found = 1
		}
		END { exit !found }' /proc/self/mountinfo
}

# ---------------------------------------------------------------- host template

# Finds a command where a sandbox of the host template would see it: in /usr
# or one of the real top-level directories it binds. Prints its path.
host_command() { # name
	local d p
	for d in /usr/local/bin /usr/bin /bin; do
		p="$d/$1"
		[ -x "$p" ] || continue
		case $(readlink -f "$p") in
		/usr/* | /bin/* | /sbin/* | /lib*/*) echo "$p"; return 0 ;;
		esac
	done
	return 1
}

build_host() { # tmpdir
	local t=$1 r=$1/rootfs d shell=/bin/sh nologin=/bin/false
	local binds=(/usr) langs=()

	mkdir -p "$r"/{etc,home/"$TEMPLATE_USER",root,tmp,var/tmp,proc,sys,dev,usr,.sandpit}
	chmod 0755 "$r/home/$TEMPLATE_USER"
	chmod 0700 "$r/root" "$r/.sandpit"
	chmod 1777 "$r/tmp" "$r/var/tmp"
	if [ "$is_root" -eq 1 ]; then
		chown "$TEMPLATE_UID:$TEMPLATE_UID" "$r/home/$TEMPLATE_USER"
	else
		log "host: not root, so home/$TEMPLATE_USER stays owned by $(id -u)"
	fi

	# The top-level directories: with merged /usr (bin -> usr/bin...) the same
	# symlink reaches the bound /usr; a real directory is bound from the host.
	for d in "${TOP_DIRS[@]}"; do
		if [ -L "/$d" ]; then
			ln -s "$(readlink "/$d")" "$r/$d"
		elif [ -d "/$d" ]; then
			mkdir "$r/$d"
			binds+=("/$d")
		fi
	done

	# Users resolve from these files alone (nsswitch: files). The shells are
	# the host's, seen through the binds.
	[ -x /bin/bash ] && shell=/bin/bash
	[ -x /usr/sbin/nologin ] && nologin=/usr/sbin/nologin
	cat >"$r/etc/passwd" <<-EOF
		root:x:0:0:root:/root:$shell
		$TEMPLATE_USER:x:$TEMPLATE_UID:$TEMPLATE_UID::/home/$TEMPLATE_USER:$shell
		nobody:x:65534:65534:nobody:/nonexistent:$nologin
	EOF
	cat >"$r/etc/group" <<-EOF
		root:x:0:
		$TEMPLATE_USER:x:$TEMPLATE_UID:
		nogroup:x:65534:
	EOF
	write_etc_network_files "$r"
	cat >"$r/etc/nsswitch.conf" <<-EOF
		passwd: files
		group: files
		shadow: files
		hosts: files dns
		networks: files
		protocols: files
		services: files
	EOF
	cp -L /etc/os-release "$r/etc/os-release"
	# What the bound /usr reaches in /etc: the alternatives' links (java,
	# jshell, ...) and the configuration /usr/lib/R and /usr/lib/jvm link to.
	for d in /etc/alternatives /etc/R /etc/java-*; do
		[ -d "$d" ] && cp -a "$d" "$r/etc/"
	done
	if [ -d /etc/ssl/certs/java ]; then
		mkdir -p "$r/etc/ssl/certs"
		cp -a /etc/ssl/certs/java "$r/etc/ssl/certs/"
	fi

	host_command python3 >/dev/null && langs+=(python)
	host_command node >/dev/null && langs+=(javascript)
	host_command bash >/dev/null && langs+=(bash)
	# The kernels of docs/code-interpreter.md: typescript.js, r_kernel.R, JavaKernel.java.
	host_command node >/dev/null && [ -f /usr/share/nodejs/typescript/lib/typescript.js ] && langs+=(typescript)
	host_command Rscript >/dev/null && [ -d /usr/lib/R/site-library/jsonlite ] && langs+=(r)
	host_command java >/dev/null && [ -d /usr/lib/jvm/default-java/jmods ] && langs+=(java)
	write_template_json "$t/template.json" host "$TEMPLATE_USER" \
		"$(json_array "${langs[@]}")" "$(json_array "${binds[@]}")"
}

# hosts and resolv.conf: placeholders, sandboxes have no network yet; the agent
# may bind its own over them later.
write_etc_network_files() { # rootfs
	printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$1/etc/hosts"
	printf '# sandpit placeholder: sandboxes have no network yet.\nnameserver 127.0.0.1\n' \
		>"$1/etc/resolv.conf"
}

expect_mode() { # path octal-mode
	[ "$(stat -c %a "$1")" = "$2" ] || die "$1 has mode $(stat -c %a "$1"), not $2"
}

# Reads a template.json's "binds" into the array named $2 (no JSON tool is
# assumed; the file is the one-line form written above).
read_template_binds() { # template.json array-name
	local json="" inner
	local -n out=$2
	read -r -d '' json <"$1" || true
	[[ $json =~ \"binds\":\ \[([^]]*)\] ]] || die "$1: no binds"
	inner=${BASH_REMATCH[1]//\"/}
	IFS=', ' read -r -a out <<<"$inner"
}

# Top-level symlinks among TOP_DIRS in a root directory, as "name -> target".
top_links() { # root
	local -a names=()
	local d
	for d in "${TOP_DIRS[@]}"; do names+=(-o -name "$d"); done
	find "$1" -mindepth 1 -maxdepth 1 -type l \( "${names[@]:1}" \) -printf '%f -> %l\n' | sort
}

# Few processes on purpose: this runs on every build of `host`, which tests
# expect to be instant.
check_host() { # template dir
	local t=$1 r=$1/rootfs d f modes
	local -a binds
	for f in etc/passwd etc/group etc/hosts etc/resolv.conf etc/nsswitch.conf etc/os-release; do
		[ -s "$r/$f" ] || die "host: rootfs/$f is missing"
	done
	grep -q "^$TEMPLATE_USER:x:$TEMPLATE_UID:$TEMPLATE_UID:" "$r/etc/passwd" || die "host: no $TEMPLATE_USER in passwd"
	modes=$(cd "$r" && stat -c '%n=%a' tmp var/tmp root .sandpit "home/$TEMPLATE_USER" | tr '\n' ' ')
	[ "$modes" = "tmp=1777 var/tmp=1777 root=700 .sandpit=700 home/$TEMPLATE_USER=755 " ] ||
		die "host: wrong modes: $modes"
	if [ "$is_root" -eq 1 ]; then
		[ "$(stat -c %u:%g "$r/home/$TEMPLATE_USER")" = "$TEMPLATE_UID:$TEMPLATE_UID" ] || die "host: home owner"
	fi
	[ "$(top_links "$r")" = "$(top_links /)" ] || die "host: rootfs/ has not the host's top-level symlinks"
	read_template_binds "$t/template.json" binds
	[[ " ${binds[*]} " == *" /usr "* ]] || die "host: /usr is not in binds"
	for d in "${TOP_DIRS[@]}"; do
		if [ -d "/$d" ] && ! [ -L "/$d" ]; then
			[ -d "$r/$d" ] || die "host: rootfs/$d is missing"
			[[ " ${binds[*]} " == *" /$d "* ]] || die "host: /$d is not in binds"
		fi
	done
	# Use the template as the agent will: binds read-only, proc, then the
	# languages as uid 1000. Private mount namespace: nothing outlives it.
	if [ "$is_root" -eq 1 ]; then
		# shellcheck disable=SC2016 # expanded by the inner shell
		unshare --mount --propagation private -- "$BASH" -euc '
			r=$1; user=$2; uid=$3; shift 3
			for b in "$@"; do
				mount --bind "$b" "$r$b"
				mount -o remount,bind,ro "$r$b"
			done
			mount -t proc proc "$r/proc"
			c="test \"\$(id -un)\" = $user"
			grep -q "\"python\"" "$r/../template.json" && c="$c && python3 -c \"import json\" "
			grep -q "\"javascript\"" "$r/../template.json" && c="$c && node -e \"1+1\" "
			grep -q "\"bash\"" "$r/../template.json" && c="$c && bash -c true"
			chroot --userspec="$uid:$uid" "$r" /usr/bin/env -i PATH=/usr/bin:/bin HOME="/home/$user" sh -c "$c"
		' _ "$r" "$TEMPLATE_USER" "$TEMPLATE_UID" "${binds[@]}" ||
			die "host: running the languages in the template failed"
	fi
}

# ---------------------------------------------------------------- default template

build_default() { # tmpdir
	local t=$1 r=$1/rootfs mirror="" uri suite entries step bad

	# The host's own Debian mirror for this suite, if it has one; otherwise
	# debootstrap's default. The chroot gets the host's bookworm, -updates and
	# -security entries so that security updates keep working.
	entries=$(host_apt_entries | awk -v s="$SUITE" '$2 == s || $2 == s "-updates" || $2 == s "-security"' | awk '!seen[$0]++')
	mirror=$(awk -v s="$SUITE" '$2 == s { print $1; exit }' <<<"$entries")
	log "default: debootstrap --variant=minbase $SUITE ${mirror:-(debootstrap default mirror)} (a few minutes)"
	step=$(now_us)
	# shellcheck disable=SC2086 # $mirror is one word or none
	run_logged debootstrap --variant=minbase "$SUITE" "$r" $mirror
	log "default: debootstrap done in $(elapsed "$step")"

	if [ -n "$mirror" ]; then
		rm -f "$r/etc/apt/sources.list"
		{
			echo "# From the build host's apt sources (sandpit mk/templates.sh)."
			while read -r uri suite; do
				printf '\nTypes: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "$uri" "$suite"
				printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
			done <<<"$entries"
		} >"$r/etc/apt/sources.list.d/debian.sources"
	fi
	# No service may start in the chroot while packages install.
	printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
	chmod 0755 "$r/usr/sbin/policy-rc.d"

	chroot_mount "$r"
	log "default: apt-get install ${DEFAULT_PACKAGES[*]}"
	step=$(now_us)
	run_logged in_chroot "$r" apt-get update
	# debootstrap installed the suite's release versions; bring in -updates and
	# -security.
	run_logged in_chroot "$r" apt-get -y upgrade
	run_logged in_chroot "$r" apt-get install -y --no-install-recommends "${DEFAULT_PACKAGES[@]}"
	# apt-get exits 0 even when dpkg was interrupted (Ctrl-C reaches the whole
	# process group, and bash then skips its own INT trap because the child
	# handled the signal): check that everything is installed and configured.
	# shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
	bad=$(in_chroot "$r" dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${DEFAULT_PACKAGES[@]}" 2>&1 |
		awk '$1 != "ii"' || true)
	bad+=$(in_chroot "$r" dpkg --audit 2>&1 || true)
	[ -z "$bad" ] || die "default: packages not fully installed (interrupted?): $bad"
	log "default: packages installed in $(elapsed "$step")"

	log "default: user $TEMPLATE_USER ($TEMPLATE_UID:$TEMPLATE_UID), matplotlib Agg, cleanup"
	in_chroot "$r" groupadd -g "$TEMPLATE_UID" "$TEMPLATE_USER"
	in_chroot "$r" useradd -m -u "$TEMPLATE_UID" -g "$TEMPLATE_UID" -s /bin/bash "$TEMPLATE_USER"
	chmod 0755 "$r/home/$TEMPLATE_USER"

	# No display in a sandbox: plots must render off-screen. Debian's
	# matplotlib reads /etc/matplotlibrc.
	if [ -f "$r/etc/matplotlibrc" ] && grep -qE '^[[:space:]]*backend[[:space:]]*:' "$r/etc/matplotlibrc"; then
		sed -i -E 's/^[[:space:]]*backend[[:space:]]*:.*/backend: Agg/' "$r/etc/matplotlibrc"
	else
		echo 'backend: Agg' >>"$r/etc/matplotlibrc"
	fi
	# A sandbox is disposable, so `pip install` into it is what users expect;
	# PEP 668's marker would refuse it.
	rm -f "$r"/usr/lib/python3*/EXTERNALLY-MANAGED
	# matplotlib builds a font cache on first import (seconds); build it once
	# here, as the user, so that every sandbox starts with it.
	in_chroot "$r" /usr/bin/env HOME="/home/$TEMPLATE_USER" \
		chroot --userspec="$TEMPLATE_UID:$TEMPLATE_UID" / \
		python3 -c 'import matplotlib.pyplot' >>"$LOG" 2>&1 ||
		log "default: warning: could not pre-build matplotlib's font cache"

	in_chroot "$r" apt-get clean
	chroot_umount
	rm -f "$r/usr/sbin/policy-rc.d"
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin "$r"/var/cache/debconf/*-old
	rm -rf "$r"/tmp/* "$r"/var/tmp/* "$r"/root/.cache
	# debootstrap copied the build host's resolv.conf and hostname.
	write_etc_network_files "$r"
	echo sandbox >"$r/etc/hostname"
	mkdir -p "$r/.sandpit"
	chmod 0700 "$r/.sandpit"

	write_template_json "$t/template.json" default "$TEMPLATE_USER" \
		'["python", "javascript", "bash"]' '[]' "$(template_inputs default)"
}

check_default() { # template dir
	local r=$1/rootfs out
	[ "$is_root" -eq 1 ] || die "default: the check must run as root (chroot)"
	grep -q "^$TEMPLATE_USER:x:$TEMPLATE_UID:$TEMPLATE_UID:" "$r/etc/passwd" || die "default: no $TEMPLATE_USER in passwd"
	expect_mode "$r/.sandpit" 700
	expect_mode "$r/home/$TEMPLATE_USER" 755
	chroot_mount "$r"
	out=$(in_chroot "$r" /usr/bin/env HOME="/home/$TEMPLATE_USER" \
		chroot --userspec="$TEMPLATE_UID:$TEMPLATE_UID" / /bin/bash -c '
			python3 -c "import numpy, pandas, matplotlib; print(\"ok\", matplotlib.get_backend())"
			node -e "console.log(1+1)"
			git --version >/dev/null && curl --version >/dev/null && npm --version >/dev/null && echo tools' 2>&1) ||
		{ chroot_umount; die "default: smoke check failed: $out"; }
	chroot_umount
	[ "${out,,}" = "$(printf 'ok agg\n2\ntools')" ] || die "default: unexpected smoke output: $out"
	log "default: smoke check ok (python3 numpy pandas matplotlib[agg], node, git, curl, npm)"
}

# ---------------------------------------------------------------- code-interpreter template

# Built FROM default by sandpit's own Dockerfile builder (docs/templates.md):
# a standalone agent of our own, in <tmp>/.agent, builds templates/code-interpreter
# into its image store, whose layers are then flattened over default's rootfs
# into <tmp>/rootfs. The build's sandboxes have no network, so the .deb files
# come from the host's apt into the context first.

# The .deb files of PACKAGES and of what they depend on that `default` lacks,
# resolved by the host's apt against default's dpkg status and downloaded into
# DEST.
download_closure() { # default-rootfs dest-dir work-dir packages...
	local rootfs=$1 dest=$2 work=$3 sim
	local -a want=()
	shift 3
	cp "$rootfs/var/lib/dpkg/status" "$work/status"
	sim=$(apt-get -s -o Dir::State::status="$work/status" -o Debug::NoLocking=1 \
		install --no-install-recommends "$@" 2>&1) ||
		die "code-interpreter: the host's apt cannot resolve $* (apt-get update?): $(tail -n 5 <<<"$sim")"
	# "Inst NAME [OLD] (VERSION SUITE [ARCH])"
	mapfile -t want < <(awk '$1 == "Inst" { v = $0; sub(/^[^(]*\(/, "", v); sub(/ .*/, "", v); print $2 "=" v }' <<<"$sim")
	[ ${#want[@]} -gt 0 ] || die "code-interpreter: apt found nothing to install for $*"
	log "code-interpreter: apt-get download of ${#want[@]} packages"
	(cd "$dest" && run_logged apt-get -o APT::Sandbox::User=root download "${want[@]}")
	[ "$(find "$dest" -name '*.deb' | wc -l)" -eq ${#want[@]} ] ||
		die "code-interpreter: apt-get download did not bring the ${#want[@]} .deb files"
}

BUILD_AGENT_PID=""
stop_build_agent() {
	[ -n "$BUILD_AGENT_PID" ] || return 0
	kill -TERM "$BUILD_AGENT_PID" 2>/dev/null || true
	wait "$BUILD_AGENT_PID" 2>/dev/null || true
	BUILD_AGENT_PID=""
}

build_code_interpreter() { # tmpdir
	local t=$1 r=$1/rootfs a=$1/.agent ctx=$1/.context base="$dir/default/rootfs"
	local cli="$BIN/sandpit" rec="" layers="" l step i
	local -a pkgs=()
	for i in sandpit-agent sandpit-init sandpit; do
		[ -x "$BIN/$i" ] || die "code-interpreter: $BIN/$i is missing (make all)"
	done
	is_complete "$dir/default" || die "code-interpreter: no default template in $dir/default"
	mkdir -p "$ctx" "$a"
	cp -a "$CI_SRC/." "$ctx/"
	mkdir "$ctx/debs"
	mapfile -t pkgs < <(sed 's/#.*//; /^[[:space:]]*$/d' "$CI_SRC/packages")
	step=$(now_us)
	download_closure "$base" "$ctx/debs" "$t" "${pkgs[@]}"
	log "code-interpreter: $(du -sh "$ctx/debs" | cut -f1) of .deb files in $(elapsed "$step")"

	# An agent of our own: its socket, state, image store and cgroup are ours
	# alone, and it is stopped (its sandboxes torn down) before the rootfs is
	# made. User namespaces off: the layers keep the ids dpkg gave them.
	"$BIN/sandpit-agent" --standalone --socket "$a/agent.sock" --state-dir "$a/state" \
		--templates-dir "$dir" --images-dir "$a/images" --init "$BIN/sandpit-init" \
		--kernels-dir none --userns off --cgroup-parent "sandpit-templates-$$" \
		--log-format text 2>>"$LOG" &
	BUILD_AGENT_PID=$!
	for i in $(seq 200); do
		SANDPIT_URL="unix://$a/agent.sock" "$cli" ls >/dev/null 2>&1 && break
		kill -0 "$BUILD_AGENT_PID" 2>/dev/null || die "code-interpreter: the build agent exited"
		[ "$i" -lt 200 ] || die "code-interpreter: the build agent did not answer in 10s"
		sleep 0.05
	done
	log "code-interpreter: sandpit template build (FROM default; a few minutes)"
	step=$(now_us)
	SANDPIT_URL="unix://$a/agent.sock" run_logged "$cli" template build -t code-interpreter \
		--memory 4Gi --disk 4Gi --cpu 2 "$ctx"
	log "code-interpreter: built in the agent's store in $(elapsed "$step")"
	stop_build_agent

	# The image record's layers (bottom first) over default's rootfs, through a
	# read-only overlay that applies the whiteouts, copied into one directory.
	# shellcheck disable=SC2016 # a python program
	rec=$(python3 -c '
import glob, json, sys
for f in glob.glob(sys.argv[1] + "/images/*.json"):
    r = json.load(open(f))
    if r.get("name") == "localhost/code-interpreter:latest" and r.get("base") == "default":
        print(" ".join(r["layers"]))
' "$a/images") || die "code-interpreter: cannot read the image store"
	[ -n "$rec" ] || die "code-interpreter: no image record after the build"
	for l in $rec; do
		layers="$a/images/layers/${l#sha256:}${layers:+:$layers}"
	done
	step=$(now_us)
	mkdir "$t/.merged" "$r"
	mount -t overlay overlay -o "ro,lowerdir=$layers:$base" "$t/.merged"
	MOUNTS+=("$t/.merged")
	cp -a "$t/.merged/." "$r/"
	chroot_umount
	safe_rm "$a"
	safe_rm "$ctx"
	rm -rf "$t/.merged" "$t/status"
	log "code-interpreter: flattened into rootfs/ in $(elapsed "$step")"
	write_template_json "$t/template.json" code-interpreter "$TEMPLATE_USER" \
		'["python", "javascript", "bash", "typescript", "r", "java"]' '[]' \
		"$(template_inputs code-interpreter)"
}

check_code_interpreter() { # template dir
	local r=$1/rootfs out
	[ "$is_root" -eq 1 ] || die "code-interpreter: the check must run as root (chroot)"
	# Nothing here may write into the rootfs (jshell would make ~/.java).
	expect_mode "$r/.sandpit" 700
	chroot_mount "$r"
	out=$(in_chroot "$r" /usr/bin/env HOME="/home/$TEMPLATE_USER" \
		chroot --userspec="$TEMPLATE_UID:$TEMPLATE_UID" / /bin/bash -c '
			Rscript -e "cat(jsonlite::toJSON(1:2), \"\n\")"
			node -e "console.log(require(\"/usr/share/nodejs/typescript\").transpile(\"let x: number = 3\").trim())"
			java --list-modules | grep -q "^jdk.jshell@" && java -version 2>&1 | head -n 1 | cut -d" " -f1
			python3 -c "import numpy; print(\"py\")"
			git --version >/dev/null && npm --version >/dev/null && echo tools' 2>&1) ||
		{ chroot_umount; die "code-interpreter: smoke check failed: $out"; }
	chroot_umount
	[ "$out" = "$(printf '[1,2] \nvar x = 3;\nopenjdk\npy\ntools')" ] ||
		die "code-interpreter: unexpected smoke output: $out"
	log "code-interpreter: smoke check ok (R + jsonlite, TypeScript, java with jdk.jshell, python3, git, npm)"
}

# ---------------------------------------------------------------- main

# Builds one template under a per-name lock, so that two concurrent runs do
# not both build it (the second waits, then finds it complete).
build_one() { # name
	local name=$1 final="$dir/$1" lockfd start old stale want have
	exec {lockfd}>"$dir/.$name.lock"
	if ! flock -n "$lockfd"; then
		log "$name: another build is running; waiting for it"
		flock "$lockfd"
	fi

	want=$(template_inputs "$name")
	if [ -e "$final" ] && [ "$force" -eq 0 ]; then
		is_complete "$final" || die "$name: $final exists but is not a complete template; rebuild with --force"
		have=$(recorded_inputs "$final/template.json")
		if [ "$have" = "$want" ]; then
			log "$name: already built in $final (--force rebuilds)"
			exec {lockfd}>&-
			return 0
		fi
		log "$name: $final was built from other inputs (${have:-none recorded}); rebuilding"
	fi
	if [ -e "$final" ] && in_use_as_lowerdir "$final/rootfs"; then
		die "$name: $final/rootfs is the lower layer of a mounted overlay; stop its sandboxes first"
	fi
	# Leftovers of a killed build: no build of this name is running (we hold
	# its lock), so they are all stale.
	for stale in "$dir/$name".tmp-* "$dir/$name".old-*; do
		[ -e "$stale" ] || continue
		log "$name: removing the stale $stale"
		safe_rm "$stale" || die "$name: unmount what is under $stale, then retry"
	done

	start=$(now_us)
	BUILD_TMP="$dir/$name.tmp-$$"
	LOG="$dir/.$name.build.log"
	BUILD_LOG_NOTE="; build log: $LOG"
	: >"$LOG"
	mkdir -m 0755 "$BUILD_TMP"
	log "$name: building in $BUILD_TMP"
	"build_${name//-/_}" "$BUILD_TMP"
	"check_${name//-/_}" "$BUILD_TMP"

	# Into place. With --force the old one is moved aside first: there is a
	# moment without the name (no renameat2 exchange in bookworm's mv), but
	# never a half-built template under it.
	old=""
	if [ -e "$final" ]; then
		old="$dir/$name.old-$$"
		mv -T -- "$final" "$old"
	fi
	mv -T -- "$BUILD_TMP" "$final"
	BUILD_TMP=""
	[ -z "$old" ] || safe_rm "$old"
	log "$name: built in $(elapsed "$start"): $final ($(du -sh "$final/rootfs" | cut -f1))"
	exec {lockfd}>&-
}

build_default_unforced() {
	local force=0
	build_one default
}

check_one() { # name
	local name=$1 start
	start=$(now_us)
	is_complete "$dir/$name" || die "$name: no complete template in $dir/$name"
	"check_${name//-/_}" "$dir/$name"
	log "$name: check passed in $(elapsed "$start")"
}

main() {
	local name
	[ "$check_only" -eq 1 ] || mkdir -p "$dir"
	for name in "${names[@]}"; do
		if [ "$check_only" -eq 1 ]; then
			check_one "$name"
			continue
		fi
		# FROM default: that one is built first unless it is there and current
		# (--force applies to the templates named only).
		if [ "$name" = code-interpreter ] && [[ " ${names[*]} " != *" default "* ]]; then
			build_default_unforced
		fi
		build_one "$name"
	done
	# Bash reads a script as it runs it: exiting here, before bash reads past
	# this call, keeps an edit of this file during a long build from being
	# run as more commands.
	exit 0
}

main
