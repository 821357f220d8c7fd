#!/usr/bin/env bash
# Installs the Debian packages sandpit needs to build, run and test; idempotent:
# does nothing when every package is already installed. Needs root.
set -euo pipefail

PACKAGES=(
        # build
        gcc make pkg-config
        libjson-c-dev libmicrohttpd-dev libcurl4-openssl-dev libyaml-dev
        # the port proxy's TLS client to the agents (gateway/src/agent-tls.c)
        libgnutls28-dev
        # SHA-256 of API keys (lib/src/apikey.c)
        libssl-dev
        libcgroup-dev libnl-3-dev libnl-route-3-dev libarchive-dev libnftables-dev nftables
        # sha256 of image blobs (docs/images.md)
        libssl-dev
        # run: the OCI runtime (crun is optional and refuses hybrid cgroup hosts); runsc is
        # gVisor, a sandbox's `runtime: runsc` (docs/templates.md#runtimes, test_runtime.py)
        runc crun runsc
        # templates
        debootstrap
        # test, lint, bench
        libcmocka-dev python3 python3-pytest python3-yaml clang clang-format clang-tidy
        libclang-rt-14-dev iproute2 procps util-linux
        # the JavaScript kernel masker test (tests/integration/test_code_mask.py) runs it on the host;
        # its npm installs the E2B SDKs for tests/compat (tests/compat/setup.sh)
        nodejs
        # mk/tools.sh unpacks kubectl and helm with it
        unzip
        # the test Kubernetes API server (tests/fixtures/kube-apiserver.py) makes its certificates with it
        openssl
        # etcd for the real control plane of `make test-k8s` (tests/fixtures/control_plane.py)
        etcd-server
        # tests/integration/test_images.py: a real registry (distribution 2.8) with htpasswd
        # auth, a static busybox as the images' root filesystem, zstd-compressed layers
        docker-registry apache2-utils busybox-static zstd
        # bench/bench_images.py: the same image pulled and unpacked by them, for comparison
        skopeo umoci
        # make images (mk/images.sh): the images built without a daemon (debootstrap, above, makes
        # the agent's base); their tests unpack them with umoci and run them with runc
        buildah
        # tests/integration/test_examples.py runs the Argo CD health check (Lua) on Sandboxes
        lua5.4
        # the TypeScript, R and Java kernels (docs/code-interpreter.md), run in the `host`
        # template's sandboxes from the host's /usr; javac compiles JavaKernel.java at `make`
        node-typescript r-base-core r-cran-jsonlite default-jdk-headless
)

missing=()
for p in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
                missing+=("$p")
        fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
        echo "sandpit: missing Debian packages (${missing[*]}); run make as root to install them" >&2
        exit 1
fi
echo "sandpit: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Packages such as docker-registry and etcd-server ship a service; the tests run
# their own copies on loopback, so none is started on the host by the install
# (policy-rc.d, which invoke-rc.d and deb-systemd-invoke honour; ours only
# when the machine has none).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
