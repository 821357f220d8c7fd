"""The container images of `make images` (mk/images.sh, images/*/Containerfile)
run: each image's OCI layout is unpacked with umoci and its entrypoint started
with runc from that bundle, configured as the chart starts it.

- the version comes from one place: VERSION = Chart.yaml's appVersion, which
  values.yaml's image.tag defaults to; the layouts carry it as their tag and
  label;
- the agent image, privileged in the host's network namespace with the
  DaemonSet's mounts (state dir shared both ways, templates, images,
  /sys/fs/cgroup, the token), creates a `host` sandbox whose /usr is the
  image's and runs a command in it through its API;
- the operator image, as the non-root user 65532 with a read-only root, no
  capabilities and no new privileges, in-cluster (service account files and
  KUBERNETES_SERVICE_HOST/PORT) against the test API server (or the real one,
  `make test-k8s`), reconciles a Sandbox to Ready through an agent and removes
  it on delete; its gateway answers;
- the test image runs the chart's `helm test` Pod as rendered (command, env,
  user, read-only root) with its ServiceAccount's token (on the real control
  plane the rendered ServiceAccount, Role and RoleBinding, so their rules are
  proven enough): the official E2B SDK in it makes a sandbox through the
  operator image's gateway, which gets `2` from python3 in the sandbox (the
  test image has no python3) and kills it; a token the API server does not
  know fails it with one line.

The module builds the images first (the agent's debootstrap base is cached in
/var/lib/sandpit/image-base, so a rebuild takes seconds)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO, Client, build_templates, find_free_port, rand_suffix, wait_for, write_token_file
from test_kube_apiserver import KUBECTL
from test_operator import OP_NS, delete_and_prove_gone, kube, lease, manifest, node, wait_ready  # noqa: F401

VERSION = (REPO / "VERSION").read_text().strip()
IMAGES = REPO / "build" / "images"
CHART = REPO / "charts" / "sandpit"
RUNC = shutil.which("runc") or "/usr/sbin/runc"
UMOCI = shutil.which("umoci") or "/usr/bin/umoci"
OPERATOR_UID = 65532
ALL_CAPS = [f"CAP_{c}" for c in (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT "
    "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
    "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ "
    "PERFMON BPF CHECKPOINT_RESTORE").split()]



def privileged_caps():
    """A privileged container's capabilities: all that this process's
    bounding set holds (ALL_CAPS is in bit order)."""
    with open("/proc/self/status") as f:
        bnd = int(next(ln for ln in f if ln.startswith("CapBnd:")).split()[1], 16)
    return [c for i, c in enumerate(ALL_CAPS) if bnd >> i & 1]


for tool in (RUNC, UMOCI):
    if not os.path.exists(tool):
        pytest.fail(f"{tool} is missing (mk/deps.sh installs it)", pytrace=False)


@pytest.fixture(scope="module")
def images():
    """`make images`' script, run for this build's binaries."""
    r = subprocess.run([str(REPO / "mk" / "images.sh"), "all"], cwd=REPO, capture_output=True, text=True,
                       timeout=1800, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"mk/images.sh all failed:\n{r.stderr[-4000:]}"
    return {"operator": IMAGES / "sandpit-operator", "agent": IMAGES / "sandpit-agent",
            "test": IMAGES / "sandpit-test"}


def layout_manifest(layout):
    """(the index entry tagged VERSION, the image config) of an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    tagged = [m for m in index["manifests"]
              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == VERSION]
    assert len(tagged) == 1, f"{layout}: no single manifest tagged {VERSION}: {index}"

    def blob(digest):
        algo, hexd = digest.split(":", 1)
        return json.loads((layout / "blobs" / algo / hexd).read_text())

    man = blob(tagged[0]["digest"])
    return tagged[0], blob(man["config"]["digest"])


class Bundle:
    """An image's layout unpacked by umoci into a runc bundle in a temp dir;
    runs the container in the foreground of `runc run` and removes it all."""

    def __init__(self, layout, name):
        self.dir = Path(tempfile.mkdtemp(prefix=f"sandpit-it-{name}-"))
        self.id = f"sandpit-it-{name}-{rand_suffix(6)}"
        self.log = self.dir / "container.log"
        self.proc = None
        r = subprocess.run([UMOCI, "unpack", "--image", f"{layout}:{VERSION}", str(self.dir / "bundle")],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            self.remove()
            pytest.fail(f"umoci unpack {layout}:{VERSION}: {r.stderr}", pytrace=False)
        self.rootfs = self.dir / "bundle" / "rootfs"
        # a non-root entrypoint must reach its rootfs (umoci makes the bundle 0700)
        os.chmod(self.dir, 0o755)
        os.chmod(self.dir / "bundle", 0o755)
        self.config = json.loads((self.dir / "bundle" / "config.json").read_text())

    def run(self):
        self.config["linux"]["cgroupsPath"] = f"/{self.id}"
        self.config["process"]["terminal"] = False  # its output goes to the log
        (self.dir / "bundle" / "config.json").write_text(json.dumps(self.config, indent=1))
        self.proc = subprocess.Popen([RUNC, "run", "--bundle", str(self.dir / "bundle"), self.id],
                                     stdin=subprocess.DEVNULL, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def pid(self):
        r = subprocess.run([RUNC, "state", self.id], capture_output=True, text=True)
        return json.loads(r.stdout)["pid"] if r.returncode == 0 else None

    def log_tail(self):
        return self.log.read_text()[-4000:] if self.log.exists() else ""

    def stop(self):
        """SIGTERM to the entrypoint; its exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        subprocess.run([RUNC, "kill", self.id, "TERM"], capture_output=True)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            subprocess.run([RUNC, "kill", self.id, "KILL"], capture_output=True)
            self.proc.wait(30)
            rc = None
        subprocess.run([RUNC, "delete", "--force", self.id], capture_output=True)
        self.proc = None
        return rc

    def remove(self):
        self.stop()
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.dir)])

    def add_bind(self, src, dst, ro=False, shared=False):
        opts = ["rbind", "ro" if ro else "rw"] + (["rshared"] if shared else ["rprivate"])
        self.config["mounts"].append({"destination": str(dst), "type": "bind", "source": str(src), "options": opts})

    def drop_namespace(self, kind):
        self.config["linux"]["namespaces"] = [n for n in self.config["linux"]["namespaces"] if n["type"] != kind]


def mounts_under(path):
    p = str(path)
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4] == p or ln.split()[4].startswith(p + "/")]


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


# --------------------------------------------------------------------------- version and layouts


def test_version_is_one_source():
    assert re.fullmatch(r"\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?", VERSION), f"VERSION: {VERSION!r}"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION, f"Chart.yaml appVersion {chart['appVersion']} != VERSION {VERSION}"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # "" is the chart's appVersion (_helpers.tpl: sandpit.image)
    assert values["image"]["tag"] in ("", VERSION), f"values.yaml image.tag: {values['image']['tag']!r}"
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert "default .Chart.AppVersion" in helpers, "image.tag no longer defaults to appVersion"
    # the binaries report it too: the build passes VERSION in (mk/config.mk), no copy in the source
    for name in ("sandpit-operator", "sandpit"):
        p = subprocess.run([str(REPO / "build" / "bin" / name), "--version"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stdout.split() == [name, VERSION], (name, p.stdout, p.stderr)
    for src in ("node-agent/src/api.h", "operator/src/operator.h", "cli/src/cli.h", "gateway/src/mcp.c"):
        assert not re.search(r'#define\s+\w*VERSION\s+"', (REPO / src).read_text()), f"{src} has a version of its own"


def test_layouts_are_tagged_with_the_version(images):
    for what, layout in images.items():
        _, cfg = layout_manifest(layout)
        assert cfg["config"]["Labels"]["org.opencontainers.image.version"] == VERSION
        entry = {"test": ["/usr/local/bin/node", "/usr/local/lib/sandpit-test/helm-test.mjs"]}
        assert cfg["config"]["Entrypoint"] == entry.get(what, [f"/usr/local/bin/sandpit-{what}"]), cfg["config"]
    for what in ("operator", "test"):
        _, c = layout_manifest(images[what])
        assert c["config"].get("User") == f"{OPERATOR_UID}:{OPERATOR_UID}", c["config"]
    _, ag = layout_manifest(images["agent"])
    assert ag["config"].get("User", "") in ("", "0", "root"), ag["config"]


# --------------------------------------------------------------------------- agent


def configure_agent(b, host):
    """b's config as the DaemonSet's pod: privileged, the host's network and
    cgroups, the hostPath mounts at the same paths; returns (port, token)."""
    state, templates, imgs, tokdir = host / "state", host / "templates", host / "images", host / "token"
    for d in (state, imgs, tokdir):
        d.mkdir()
    build_templates(templates)
    _, token = write_token_file(tokdir)
    # mountPropagation: Bidirectional needs a shared mount on the node
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    subprocess.run(["mount", "--make-shared", str(state)], check=True)
    port = find_free_port()
    c = b.config
    c["process"]["args"] = [
        "/usr/local/bin/sandpit-agent", "--standalone", f"--listen=127.0.0.1:{port}",
        "--token-file=/etc/sandpit/agent-token/token",
        f"--state-dir={state}", f"--templates-dir={templates}", f"--images-dir={imgs}", "--runtime=runc",
        f"--cgroup-parent={b.parent}", "--log-format=text", "--log-level=debug"]
    c["process"]["user"] = {"uid": 0, "gid": 0}
    c["process"]["capabilities"] = {k: privileged_caps() for k in ("bounding", "effective", "permitted", "inheritable")}
    c["process"]["noNewPrivileges"] = False
    c["process"].pop("apparmorProfile", None)
    c["root"]["readonly"] = False
    c["linux"]["maskedPaths"] = []
    c["linux"]["readonlyPaths"] = []
    c["linux"].pop("seccomp", None)
    c["linux"]["rootfsPropagation"] = "rslave"
    b.drop_namespace("network")  # hostNetwork: true
    b.drop_namespace("cgroup")
    c["mounts"] = [m for m in c["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
    c["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                        "options": ["nosuid", "noexec", "nodev", "rw"]})
    b.add_bind("/sys/fs/cgroup", "/sys/fs/cgroup")
    b.add_bind(state, state, shared=True)
    b.add_bind(templates, templates)
    b.add_bind(imgs, imgs)
    b.add_bind(tokdir, "/etc/sandpit/agent-token", ro=True)
    return port, token


def remove_cgroups(parent):
    """Removes PARENT in every cgroup v1 hierarchy (or the v2 tree); returns
    the sandbox cgroups that were still below it."""
    left = []
    roots = [p for p in Path("/sys/fs/cgroup").iterdir() if p.is_dir()] + [Path("/sys/fs/cgroup")]
    for root in roots:
        d = root / parent
        if not d.is_dir():
            continue
        for dirpath, _, _ in os.walk(d, topdown=False):
            if dirpath != str(d):
                left.append(dirpath)
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
    return left


@pytest.fixture
def agent_container(images):
    """The agent image started as the DaemonSet starts it."""
    b = Bundle(images["agent"], "agent")
    b.parent = f"sandpit-it-img-{rand_suffix(6)}"
    host = Path(tempfile.mkdtemp(prefix="sandpit-it-agent-host-"))
    os.chmod(host, 0o755)
    state = host / "state"
    b.api = None
    try:
        port, token = configure_agent(b, host)
        b.run()
        b.api = Client(tcp=("127.0.0.1", port), token=token)
        wait_for(lambda: b.proc.poll() is not None or http_status(f"http://127.0.0.1:{port}/v1/sandboxes") == 401,
                 30, what="the agent container's API")
        assert b.proc.poll() is None, "the agent container exited at start:\n" + b.log_tail()
        yield b
    finally:
        leftover = []
        if b.api is not None and b.proc is not None and b.proc.poll() is None:
            for sid in list(b.api.created):
                b.api.delete(f"/v1/sandboxes/{sid}")
            try:
                leftover = b.api.list_ids()
            except Exception as e:  # noqa: BLE001 the agent died; the checks below say what it left
                leftover = [f"(cannot list: {e})"]
        started = b.proc is not None
        rc = b.stop()
        log = b.log_tail()
        b.remove()
        left_mounts = [m for m in mounts_under(state) if m != str(state)]
        for m in reversed(left_mounts):
            subprocess.run(["umount", "-l", m])
        if mounts_under(state):
            subprocess.run(["umount", "-l", str(state)])
        left_cgroups = remove_cgroups(b.parent)
        subprocess.run(["rm", "-rf", "--one-file-system", str(host)])
        assert not leftover, f"sandboxes left in the agent container: {leftover}"
        assert not started or rc == 0, f"the agent container did not stop cleanly on SIGTERM ({rc}):\n{log}"
        assert not left_mounts, f"mounts left under the state dir: {left_mounts}"
        assert not left_cgroups, f"sandbox cgroups left: {left_cgroups}"


def test_agent_image_runs_a_sandbox(agent_container):
    b = agent_container
    # the agent running is the image's binary
    pid = b.pid()
    assert pid, "runc state has no pid"
    assert os.path.samefile(f"/proc/{pid}/exe", b.rootfs / "usr/local/bin/sandpit-agent")
    sbx = b.api.create(template="host", labels={"test": "image"})
    r = b.api.exec(sbx["id"], cmd=["python3", "-c", "print(1+1)"])
    assert r.status == 200 and r.exit_code == 0, r
    assert r.stdout.strip() == "2", r
    # the host template's /usr is the image's: its binaries are there (and not on this host)
    assert not os.path.exists("/usr/local/bin/sandpit-agent")
    out = b.api.sh(sbx["id"], "ls /usr/local/bin")
    assert "sandpit-agent" in out.split(), out
    # both OCI runtimes are in the image and run there
    for rt in ("runc", "crun"):
        r = subprocess.run([RUNC, "exec", b.id, rt, "--version"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "version" in r.stdout, f"{rt} in the agent image: {r}"
    # the chart's `helm test` Pod runs this image by default: sh and curl
    r = subprocess.run([RUNC, "exec", b.id, "sh", "-c", "curl --version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("curl "), f"sh and curl in the agent image: {r}"
    r = b.api.delete(f"/v1/sandboxes/{sbx['id']}")
    assert r.status in (200, 204), r
    assert b.api.list_ids() == []


# --------------------------------------------------------------------------- operator


@pytest.fixture
def operator_container(images, kube, node, lease):  # noqa: F811 fixtures
    """The operator image as the chart's Deployment runs it: uid 65532,
    read-only root, no capabilities, in-cluster configuration, the agent token
    Secret mounted; in the host's network to reach the loopback API server."""
    b = Bundle(images["operator"], "operator")
    try:
        configure_operator(b, kube, node)
        b.run()
        wait_for(lambda: b.proc.poll() is not None or http_status(f"http://127.0.0.1:{b.health}/readyz") == 200,
                 30, what="the operator container's /readyz")
        assert b.proc.poll() is None, "the operator container exited at start:\n" + b.log_tail()
        yield b
    finally:
        started = b.proc is not None
        alive = started and b.proc.poll() is None
        rc = b.stop()
        log = b.log_tail()
        b.remove()
        assert not started or alive, "the operator container died:\n" + log
        assert not started or rc == 0, f"the operator container did not stop cleanly on SIGTERM ({rc}):\n{log}"
        assert node.token not in log, "the agent token was logged"


def configure_operator(b, kube, node):
    """b's config as the chart's Deployment: the image's user, a read-only
    root, no capabilities, no new privileges, in-cluster configuration from
    the service account files, the agent token Secret; the host's network
    (the API server and the agent are on loopback)."""
    sa = b.dir / "serviceaccount"
    tok = b.dir / "agent-token"
    for d in (sa, tok):
        d.mkdir()
        os.chmod(d, 0o755)
    (sa / "token").write_text(kube.token)
    shutil.copy(kube.dir / "ca.crt", sa / "ca.crt")
    (sa / "namespace").write_text(OP_NS)
    shutil.copy(node.token_file, tok / "token")
    for f in list(sa.iterdir()) + [tok / "token"]:
        os.chown(f, OPERATOR_UID, OPERATOR_UID)
        os.chmod(f, 0o400)
    b.health, b.gateway = find_free_port(), find_free_port()
    c = b.config
    assert c["process"]["user"]["uid"] == OPERATOR_UID, c["process"]["user"]
    c["process"]["args"] = [
        "/usr/local/bin/sandpit-operator", "--in-cluster", f"--namespace={OP_NS}",
        "--agent-token-file=/etc/sandpit/agent-token/token", f"--health-listen=127.0.0.1:{b.health}",
        "--workers=2", "--resync-seconds=2", "--log-format=text", "--log-level=debug",
        f"--gateway-listen=127.0.0.1:{b.gateway}", "--agent-insecure-http"]  # the test's agent: plain HTTP
    c["process"]["env"] = [e for e in c["process"].get("env", []) if not e.startswith("KUBERNETES_")] + [
        "KUBERNETES_SERVICE_HOST=127.0.0.1", f"KUBERNETES_SERVICE_PORT={kube.port}", "POD_NAME=sandpit-operator-img"]
    c["process"]["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted", "inheritable", "ambient")}
    c["process"]["noNewPrivileges"] = True
    c["root"]["readonly"] = True
    b.drop_namespace("network")
    b.add_bind(sa, "/var/run/secrets/kubernetes.io/serviceaccount", ro=True)
    b.add_bind(tok, "/etc/sandpit/agent-token", ro=True)


def test_operator_image_reconciles_a_sandbox(operator_container, kube, node):  # noqa: F811 fixtures
    b = operator_container
    pid = b.pid()
    assert pid, "runc state has no pid"
    with open(f"/proc/{pid}/status") as f:
        ids = {ln.split(":")[0]: ln.split()[1:] for ln in f if ln.startswith(("Uid:", "Gid:", "CapEff:"))}
    assert ids["Uid"] == [str(OPERATOR_UID)] * 4 and ids["Gid"] == [str(OPERATOR_UID)] * 4, ids
    assert int(ids["CapEff"][0], 16) == 0, ids
    assert os.path.samefile(f"/proc/{pid}/exe", b.rootfs / "usr/local/bin/sandpit-operator")
    name = f"img-{rand_suffix(6)}"
    kube.kubectl("apply", "-f", "-", input=manifest(name))
    obj = wait_ready(kube, name)
    sid = obj["status"]["sandboxID"]
    assert node.api.get(f"/v1/sandboxes/{sid}").status == 200
    # the gateway in the same binary answers (no API key: refused, not absent)
    assert http_status(f"http://127.0.0.1:{b.gateway}/sandboxes") == 401
    delete_and_prove_gone(kube, node, name)


# --------------------------------------------------------------------------- helm test


def render_hook(gateway_port, ns):
    """The chart's `helm test` objects, rendered with the gateway on."""
    helm = shutil.which("helm") or "/var/cache/sandpit/tools/bin/helm"
    if not os.path.exists(helm):
        pytest.fail(f"helm is missing ({helm}; mk/tools.sh installs it)", pytrace=False)
    r = subprocess.run([helm, "template", "t", str(CHART), "--namespace", ns, "--show-only",
                        "templates/tests/sandbox-test.yaml", "--set", "operator.gateway.enabled=true",
                        "--set", f"operator.gateway.port={gateway_port}", "--set", "tests.template=host",
                        "--set", "tests.timeoutSeconds=60"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def hook_token(kube, hook_docs, ns):
    """A token of the hook's ServiceAccount with the hook's rules: on the real
    control plane the rendered objects themselves and a TokenRequest; on the
    fixture a registered token and the rendered Role's verbs as its grant."""
    sa = next(d for d in hook_docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    role = next(d for d in hook_docs if d["kind"] == "Role")
    assert role["rules"] == [{"apiGroups": ["sandpit.dev"], "resources": ["sandboxes"],
                              "verbs": ["create", "delete"]}], role["rules"]
    if getattr(kube, "real", False):
        objs = [d for d in hook_docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))
        st, _, tr = kube.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                                 {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                  "spec": {"expirationSeconds": 3600}})
        assert st == 201, tr
        return tr["status"]["token"]
    user = f"system:serviceaccount:{ns}:{sa}"
    token = f"hook-{rand_suffix(12)}"
    for path, body in (("/_admin/tokens", {"token": token, "username": user, "uid": f"uid-{sa}",
                                           "groups": ["system:serviceaccounts", "system:authenticated"]}),
                       ("/_admin/grants", {"user": user, "namespace": ns, "verbs": role["rules"][0]["verbs"]})):
        st, _, obj = kube.request("POST", path, body)
        assert st in (200, 201), (path, st, obj)
    return token


def run_hook(layout, pod, token, gateway_port):
    """The hook Pod's container from the test image's layout, as the kubelet
    would start it: the rendered command and env, the pod's user, a read-only
    root, no capabilities, no new privileges, the ServiceAccount files where a
    pod has them; the gateway Service's name resolving to the loopback gateway
    (the host's network). Returns (exit code, output)."""
    spec = pod["spec"]
    c = spec["containers"][0]
    b = Bundle(layout, "helm-test")
    try:
        # what the Pod needs is in the image, not on this host
        assert (b.rootfs / "usr/local/lib/sandpit-test/node_modules/e2b/package.json").exists()
        assert not any((b.rootfs / d / "python3").exists() for d in ("usr/bin", "usr/local/bin")), \
            "the test image has python3: its `2` could come from itself"
        env = {e["name"]: e["value"] for e in c["env"]}
        url = env["E2B_API_URL"]
        assert env["E2B_SANDBOX_URL"] == url
        host = re.fullmatch(r"http://([a-z0-9.-]+):(\d+)", url)
        assert host and int(host.group(2)) == gateway_port, url
        sa = b.dir / "serviceaccount"
        sa.mkdir()
        (sa / "token").write_text(token)
        (sa / "namespace").write_text(pod["metadata"]["namespace"])
        hosts = b.dir / "hosts"
        hosts.write_text(f"127.0.0.1 localhost {host.group(1)}\n")
        for f in (sa, sa / "token", sa / "namespace", hosts):
            os.chmod(f, 0o755 if f.is_dir() else 0o444)
        cfg = b.config
        uid = spec["securityContext"]["runAsUser"]
        assert cfg["process"]["user"]["uid"] == uid == OPERATOR_UID, cfg["process"]["user"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        cfg["process"]["args"] = [*c["command"], *c.get("args", [])]
        cfg["process"]["env"] = [e for e in cfg["process"].get("env", []) if e.startswith("PATH=")] + \
            [f"{k}={v}" for k, v in env.items()]
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}, c["securityContext"]
        cfg["process"]["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted", "inheritable",
                                                          "ambient")}
        cfg["process"]["noNewPrivileges"] = True
        cfg["root"]["readonly"] = True
        b.drop_namespace("network")
        b.add_bind(sa, "/var/run/secrets/kubernetes.io/serviceaccount", ro=True)
        b.add_bind(hosts, "/etc/hosts", ro=True)
        b.run()
        try:
            rc = b.proc.wait(int(env["SANDPIT_TIMEOUT"]) * 3)
        except subprocess.TimeoutExpired:
            rc = None
        return rc, b.log_tail()
    finally:
        b.remove()


def watch_sandboxes(kube, ns):
    """kubectl's watch of the Sandboxes in ns, every version as JSON."""
    return subprocess.Popen([KUBECTL, "--kubeconfig", kube.kubeconfig, "get", "sandboxes.sandpit.dev", "-n", ns,
                             "--watch", "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def watched(proc):
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    objs, dec, i = [], json.JSONDecoder(), 0
    while True:
        while i < len(out) and out[i].isspace():
            i += 1
        if i >= len(out):
            return objs
        o, i = dec.raw_decode(out, i)
        objs.append(o)


def node_counters(node):
    """The node agent's sandbox creations and execs (its Prometheus /metrics)."""
    r = node.api.get("/metrics")
    assert r.status == 200, r
    vals = dict(re.findall(r"^(sandpit_sandbox_creations_total|sandpit_exec_total) (\d+)$", r.body.decode(), re.M))
    return int(vals["sandpit_sandbox_creations_total"]), int(vals["sandpit_exec_total"])


def test_helm_test_pod_runs_the_e2b_sdk(images, operator_container, kube, node):  # noqa: F811 fixtures
    b = operator_container
    ns = "default"
    docs = render_hook(b.gateway, ns)
    pod = next(d for d in docs if d["kind"] == "Pod")
    assert pod["spec"]["containers"][0]["image"] == f"sandpit-test:{VERSION}"
    token = hook_token(kube, docs, ns)
    try:
        w = watch_sandboxes(kube, ns)
        made0, execs0 = node_counters(node)
        rc, out = run_hook(images["test"], pod, token, b.gateway)
        seen = watched(w)
        assert rc == 0, f"the helm test Pod failed ({rc}):\n{out}\noperator:\n{b.log_tail()}"
        m = re.fullmatch(r"sandbox (\S+) \(template host\): python3 -c 'print\(1\+1\)' printed 2; killed\n", out)
        assert m, out
        sid = m.group(1)
        # that sandbox was a Sandbox of the hook's namespace, Ready on the node
        ready = [o for o in seen if sid in json.dumps(o) and any(
            c["type"] == "Ready" and c["status"] == "True" for c in o.get("status", {}).get("conditions", []))]
        assert ready, f"no Ready Sandbox with {sid} in the watch: {json.dumps(seen)[:3000]}"
        node_sid = ready[-1]["status"]["sandboxID"]
        # and it is gone: the object and the node's sandbox
        name = ready[-1]["metadata"]["name"]
        wait_for(lambda: kube.request("GET", f"/apis/sandpit.dev/v1alpha1/namespaces/{ns}/sandboxes/{name}")[0]
                 == 404, 60, what=f"Sandbox {name} to go")
        assert node.api.get(f"/v1/sandboxes/{node_sid}").status == 404
        # one sandbox made on the node and one process started in it: the
        # `2` is python3's in the sandbox (the test image has none of its own)
        assert node_counters(node) == (made0 + 1, execs0 + 1)

        # a token the API server does not know: one line, exit 1, nothing made
        made1 = node_counters(node)
        rc, out = run_hook(images["test"], pod, "not-a-token-" + rand_suffix(20), b.gateway)
        assert rc == 1, out
        assert node_counters(node) == made1
        assert re.fullmatch(r"helm test: creating a sandbox of template host through http://\S+: .+\n", out), out
    finally:
        if getattr(kube, "real", False):
            kube.kubectl("delete", "serviceaccount,role,rolebinding", "-n", ns, "t-sandpit-test",
                         "--ignore-not-found", check=False)
    assert token not in b.log_tail(), "the hook's token was logged"
