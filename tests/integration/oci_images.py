"""OCI images and registries for tests/integration/test_images.py.

- build_layer(): a layer tar (plain, gzip or zstd) from a list of entries,
  including whiteouts and deliberately malicious names and links;
- Image: layers + config -> manifest (OCI or Docker schema 2), optionally
  under an index with several platforms; push() puts it into a registry with
  the distribution API (monolithic blob uploads), as `docker push` would;
- Registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1, plain,
  with htpasswd (Basic) auth, or over TLS with a CA made by the test;
- FakeRegistry: a small registry in Python for what a real one never does:
  Bearer-token challenges with a token service, and garbage answers.
"""

import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
    "docker": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- layers


def build_layer(entries, compression="gzip"):
    """entries: dicts with name and type ("file", "dir", "symlink", "hardlink",
    "fifo", "chardev"), data/target, mode, uid, gid. Returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mode = e.get("mode", 0o755 if e["type"] == "dir" else 0o644)
            ti.uid = e.get("uid", 0)
            ti.gid = e.get("gid", 0)
            ti.mtime = 1700000000
            data = None
            t = e["type"]
            if t == "file":
                data = e.get("data", b"")
                if isinstance(data, str):
                    data = data.encode()
                ti.size = len(data)
            elif t == "dir":
                ti.type = tarfile.DIRTYPE
            elif t == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e["target"]
            elif t == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e["target"]
            elif t == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif t == "chardev":
                ti.type = tarfile.CHRTYPE
                ti.devmajor, ti.devminor = 1, 3
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    tar_bytes = raw.getvalue()
    if compression in ("gzip", "docker"):
        blob = gzip.compress(tar_bytes, mtime=0)
    elif compression == "zstd":
        blob = subprocess.run(["zstd", "-q", "-c"], input=tar_bytes, capture_output=True, check=True).stdout
    else:
        blob = tar_bytes
    return blob, sha256(tar_bytes)


def busybox_base(extra=()):
    """A small root filesystem: static busybox and the applets the tests run,
    /etc/passwd with root and app (1000), /tmp."""
    bb = Path("/usr/bin/busybox").read_bytes()
    entries = [{"name": d, "type": "dir"} for d in ("bin", "etc", "tmp", "home", "home/app")]
    entries[2]["mode"] = 0o1777
    entries[4].update(uid=1000, gid=1000)
    entries.append({"name": "bin/busybox", "type": "file", "data": bb, "mode": 0o755})
    for applet in ("sh", "cat", "ls", "env", "pwd", "id", "echo", "test", "stat", "sleep", "true"):
        entries.append({"name": f"bin/{applet}", "type": "symlink", "target": "busybox"})
    entries.append({"name": "etc/passwd", "type": "file",
                    "data": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"})
    entries.append({"name": "etc/group", "type": "file", "data": "root:x:0:\napp:x:1000:\n"})
    entries.extend(extra)
    return entries


# --------------------------------------------------------------------------- images


class Image:
    """An image made of layers [(blob, diff_id, media type)] and a config."""

    def __init__(self, layers, env=None, workdir=None, user=None, cmd=None, entrypoint=None,
                 docker=False, arch="amd64"):
        self.layers = layers
        self.docker = docker
        cfg = {}
        if env is not None:
            cfg["Env"] = env
        if workdir:
            cfg["WorkingDir"] = workdir
        if user:
            cfg["User"] = user
        if cmd:
            cfg["Cmd"] = cmd
        if entrypoint:
            cfg["Entrypoint"] = entrypoint
        self.config = json.dumps({
            "architecture": arch, "os": "linux", "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]},
        }).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                       "digest": sha256(self.config), "size": len(self.config)},
            "layers": [{"mediaType": mt, "digest": sha256(b), "size": len(b)} for b, _, mt in layers],
        }).encode()
        self.media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        self.digest = sha256(self.manifest)

    def blobs(self):
        return [self.config] + [b for b, _, _ in self.layers]


def make_layer(entries, compression="gzip"):
    blob, diff = build_layer(entries, compression)
    return (blob, diff, LAYER_TYPES[compression])


def index_of(images_by_arch):
    """An OCI index over {arch: Image}."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": img.media_type, "digest": img.digest, "size": len(img.manifest),
                       "platform": {"architecture": arch, "os": "linux"}}
                      for arch, img in images_by_arch.items()],
    }).encode()


# --------------------------------------------------------------------------- pushing


class RegistryClient:
    """The push side of the distribution API over http(s), with Basic auth."""

    def __init__(self, host, port, tls_ca=None, user=None, password=None):
        self.host, self.port, self.tls_ca = host, port, tls_ca
        self.auth = None
        if user:
            self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _conn(self):
        if self.tls_ca:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            return http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=60)
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def request(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.auth:
            h["Authorization"] = self.auth
        c = self._conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def push_blob(self, repo, blob):
        d = sha256(blob)
        st, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{d}")
        if st == 200:
            return d
        st, h, body = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert st == 202, (st, body)
        loc = h.get("Location") or h.get("location")
        if loc.startswith("http"):
            loc = "/" + loc.split("/", 3)[3]
        sep = "&" if "?" in loc else "?"
        st, _, body = self.request("PUT", f"{loc}{sep}digest={d}", body=blob,
                                   headers={"Content-Type": "application/octet-stream"})
        assert st == 201, (st, body)
        return d

    def push_manifest(self, repo, ref, data, media_type):
        st, _, body = self.request("PUT", f"/v2/{repo}/manifests/{ref}", body=data,
                                   headers={"Content-Type": media_type})
        assert st == 201, (st, body)

    def push(self, repo, tag, image):
        for b in image.blobs():
            self.push_blob(repo, b)
        self.push_manifest(repo, tag, image.manifest, image.media_type)
        return image.digest

    def push_index(self, repo, tag, images_by_arch):
        for img in images_by_arch.values():
            for b in img.blobs():
                self.push_blob(repo, b)
            self.push_manifest(repo, img.digest, img.manifest, img.media_type)
        idx = index_of(images_by_arch)
        self.push_manifest(repo, tag, idx, OCI_INDEX)
        return sha256(idx)


# --------------------------------------------------------------------------- registries


def make_ca(dirpath, host="127.0.0.1"):
    """A CA and a server certificate for host (IP SAN), with openssl."""
    d = Path(dirpath)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=sandpit test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
        "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "ext.cnf").write_text(f"subjectAltName=IP:{host}\n")
    run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"),
        "-out", str(d / "server.crt"))
    return d / "ca.crt"


class Registry:
    """Debian's docker-registry on 127.0.0.1:<free port>."""

    def __init__(self, root, htpasswd=None, tls=False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.user = self.password = None
        self.ca = None
        cfg = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
        ]
        if tls:
            self.ca = make_ca(self.root)
            cfg += ["  tls:", f"    certificate: {self.root / 'server.crt'}", f"    key: {self.root / 'server.key'}"]
        if htpasswd:
            self.user, self.password = htpasswd
            subprocess.run(["htpasswd", "-Bbc", str(self.root / "htpasswd"), self.user, self.password],
                           check=True, capture_output=True)
            cfg += ["auth:", "  htpasswd:", "    realm: sandpit-test", f"    path: {self.root / 'htpasswd'}"]
        (self.root / "config.yml").write_text("\n".join(cfg) + "\n")
        self.log = open(self.root / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.root / "config.yml")],
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        self.client = RegistryClient("127.0.0.1", self.port, tls_ca=str(self.ca) if self.ca else None,
                                     user=self.user, password=self.password)
        deadline = time.monotonic() + 30
        while True:
            try:
                st, _, _ = self.client.request("GET", "/v2/")
                if st in (200, 401):
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start: "
                                   + (self.root / "registry.log").read_text()[-2000:])
            time.sleep(0.05)

    def blob_path(self, digest):
        hexd = digest.split(":", 1)[1]
        return self.root / "data" / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class FakeRegistry:
    """A registry in Python serving {repo: {ref: (media type, bytes)}} and
    blobs, behind a Bearer token service (user/password), or answering
    garbage (mode "garbage": a 200 that is not a manifest, an upload without a
    Location)."""

    def __init__(self, user="tok", password="secret", mode="bearer"):
        self.user, self.password, self.mode = user, password, mode
        self.manifests = {}
        self.blobs = {}
        self.token = "tok-" + os.urandom(8).hex()
        self.token_requests = []
        self.blob_gets = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, body=b"", ctype="application/json", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                port = self.server.server_address[1]
                if self.path.startswith("/token"):
                    want = "Basic " + base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
                    fake.token_requests.append(self.path)
                    if self.headers.get("Authorization") != want:
                        return self.send(401, b'{"details":"bad credentials"}')
                    return self.send(200, json.dumps({"token": fake.token}).encode())
                if fake.mode == "garbage":
                    return self.send(200, b"<html>surprise</html>", ctype=OCI_MANIFEST)
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    chal = (f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",'
                            f'scope="repository:x:pull"')
                    return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}',
                                     headers=[("WWW-Authenticate", chal)])
                parts = self.path.split("/")
                # /v2/<repo...>/manifests/<ref> or /blobs/<digest>
                if len(parts) >= 5 and parts[-2] == "manifests":
                    repo = "/".join(parts[2:-2])
                    m = fake.manifests.get(repo, {}).get(parts[-1])
                    if not m:
                        return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}')
                    return self.send(200, m[1], ctype=m[0])
                if len(parts) >= 5 and parts[-2] == "blobs":
                    b = fake.blobs.get(parts[-1])
                    fake.blob_gets[parts[-1]] = fake.blob_gets.get(parts[-1], 0) + 1
                    # Slow, so that concurrent pulls overlap (correct either way).
                    time.sleep(0.2)
                    if b is None:
                        return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}')
                    return self.send(200, b, ctype="application/octet-stream")
                return self.send(404, b"{}")

            def do_HEAD(self):
                if fake.mode == "garbage":  # no blob is there...
                    return self.send(404, b"")
                return self.do_GET()

            def do_POST(self):
                # ...and an upload is answered without a Location: garbage to a push.
                return self.send(202 if fake.mode == "garbage" else 405, b"")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo, tag, image):
        for b in image.blobs():
            self.blobs[sha256(b)] = b
        self.manifests.setdefault(repo, {})[tag] = (image.media_type, image.manifest)
        self.manifests[repo][image.digest] = (image.media_type, image.manifest)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
