"""Files: read, write, batch, ls/stat/exists/mkdir/rm/mv, archives, watch, and
the path-safety attacks (symlinks and `..` planted in the sandbox, hostile
archives) that must never reach a host file."""

import hashlib
import io
import os
import secrets
import signal
import subprocess
import tarfile
import time
import urllib.parse
import zipfile

import pytest

from conftest import assert_error, rand_suffix


@pytest.fixture(autouse=True)
def no_fd_leak(agent):
    """Besides the common leak check: the agent holds no more open files after a
    file test than before (dir fds, inotify instances, spooled bodies)."""
    def count():
        try:
            return len(os.listdir(f"/proc/{agent.proc.pid}/fd"))
        except OSError:
            return None
    before = count()
    yield
    for sid in list(agent.client.created):  # their pidfds; the common check deletes them anyway
        agent.client.delete(f"/v1/sandboxes/{sid}", timeout=60)
    deadline = time.monotonic() + 5
    after = count()
    while before is not None and after is not None and after > before and time.monotonic() < deadline:
        time.sleep(0.1)
        after = count()
    if before is not None and after is not None:
        assert after <= before, f"the agent has {after - before} more open fds after the test"


def url(sid, sub, **q):
    q = {k: v for k, v in q.items() if v is not None}
    return f"/v1/sandboxes/{sid}/{sub}" + ("?" + urllib.parse.urlencode(q) if q else "")


def put_file(client, sid, path, data, **q):
    return client.request("PUT", url(sid, "files", path=path, **q), raw=data,
                          headers={"Content-Type": "application/octet-stream"})


def get_file(client, sid, path, **q):
    return client.get(url(sid, "files", path=path, **q))


def make_tar(members, gz=True):
    """members: list of (TarInfo-kwargs dict, data bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for info, data in members:
            ti = tarfile.TarInfo(info.pop("name"))
            for k, v in info.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def upload(client, sid, path, body, **q):
    return client.request("PUT", url(sid, "archive", path=path, **q), raw=body,
                          headers={"Content-Type": "application/octet-stream"})


@pytest.fixture
def host_secret():
    """A file on the host that no file call may ever reveal or change."""
    name = f"sandpit-it-hostsecret-{rand_suffix()}"
    path = f"/tmp/{name}"
    val = ("HOSTSECRET-" + secrets.token_hex(16)).encode()
    with open(path, "wb") as f:
        f.write(val)
    yield path, val
    os.unlink(path)


def host_shadow():
    with open("/etc/shadow", "rb") as f:
        return f.read()


# --------------------------------------------------------------------------- read / write


def test_write_read_roundtrip_owner_and_parents(client, sandbox):
    sid = sandbox["id"]
    data = bytes(range(256)) * 17 + b"\0end"
    r = put_file(client, sid, "/home/user/a/b/c.bin", data)
    assert r.status == 200, r
    e = r.json()["entry"]
    assert e["path"] == "/home/user/a/b/c.bin" and e["name"] == "c.bin" and e["type"] == "file"
    assert e["size"] == len(data) and e["owner"] == "user" and e["uid"] == 1000 and e["mode"] == 0o644
    r = get_file(client, sid, "/home/user/a/b/c.bin")
    assert r.status == 200 and r.body == data
    # owner = the sandbox user, parents included; checked from inside
    out = client.sh(sid, "stat -c '%u:%g %a' /home/user/a /home/user/a/b /home/user/a/b/c.bin")
    assert out.split("\n")[:3] == ["1000:1000 755", "1000:1000 755", "1000:1000 644"], out
    # relative paths start at the user's home; mode is settable
    r = put_file(client, sid, "rel.sh", b"#!/bin/sh\necho hi\n", mode="0750")
    assert r.status == 200 and r.json()["entry"]["path"] == "/home/user/rel.sh", r
    assert client.sh(sid, "/home/user/rel.sh") == "hi\n"
    assert client.sh(sid, "stat -c %a /home/user/rel.sh").strip() == "750"
    # overwrite, and an empty file
    assert put_file(client, sid, "rel.sh", b"").status == 200
    r = get_file(client, sid, "/home/user/rel.sh")
    assert r.status == 200 and r.body == b""


def test_large_file_is_streamed_both_ways(client, make_sandbox):
    sid = make_sandbox(disk="256Mi")["id"]
    data = os.urandom(1 << 20) * 40  # 40 MiB: past the 16 MiB buffered-body cap
    r = put_file(client, sid, "/tmp/big", data)
    assert r.status == 200 and r.json()["entry"]["size"] == len(data), r
    assert client.sh(sid, "sha256sum /tmp/big").split()[0] == hashlib.sha256(data).hexdigest()
    r = get_file(client, sid, "/tmp/big")
    assert r.status == 200 and len(r.body) == len(data) and r.body == data
    # a caller-set limit on the upload
    r = put_file(client, sid, "/tmp/big2", data, max_bytes=str(1 << 20))
    assert_error(r, 413)
    assert get_file(client, sid, "/tmp/big2").status == 404


def test_batch_write(client, sandbox):
    sid = sandbox["id"]
    import base64
    body = {"files": [{"path": "/home/user/m/one.txt", "data": "one"},
                      {"path": "m/two.bin", "data_b64": base64.b64encode(b"\x00\x01two").decode()},
                      {"path": "/tmp/three.sh", "data": "#!/bin/sh\n", "mode": 0o700}]}
    r = client.post(url(sid, "files/batch"), body)
    assert r.status == 200, r
    paths = [e["path"] for e in r.json()["entries"]]
    assert paths == ["/home/user/m/one.txt", "/home/user/m/two.bin", "/tmp/three.sh"]
    assert get_file(client, sid, "/home/user/m/two.bin").body == b"\x00\x01two"
    assert client.sh(sid, "cat /home/user/m/one.txt; stat -c %a /tmp/three.sh") == "one700\n"
    assert_error(client.post(url(sid, "files/batch"), {"files": [{"data": "x"}]}), 400)
    assert_error(client.post(url(sid, "files/batch"), {"files": [{"path": "a", "data_b64": "!!"}]}), 400)
    assert_error(client.post(url(sid, "files/batch"), {"nope": []}), 400)
    assert_error(client.post(url(sid, "files/batch"), {"files": [{"path": "/etc/x", "data": "x"}]}), 403)


def test_default_template(client, make_sandbox):
    from conftest import DEFAULT_ROOTFS
    if not DEFAULT_ROOTFS.is_dir():
        pytest.skip("the default template is not built (make rootfs)")
    sid = make_sandbox(template="default")["id"]
    r = client.get(url(sid, "fs/stat", path="/usr/bin/python3"))
    assert r.status == 200 and r.json()["entry"]["type"] in ("symlink", "file"), r
    assert put_file(client, sid, "calc.py", b"print(sum(range(10)))\n").status == 200
    assert client.sh(sid, "cd ~ && python3 calc.py") == "45\n"
    assert client.get(url(sid, "archive", path="/usr/lib/python3", max_bytes="1000")).status == 413


# --------------------------------------------------------------------------- fs calls


def test_ls_stat_exists(client, sandbox):
    sid = sandbox["id"]
    client.sh(sid, "mkdir -p ~/t/d1/d2 && echo hello > ~/t/f && echo x > ~/t/d1/d2/deep && "
                   "ln -s f ~/t/link && chmod 640 ~/t/f")
    r = client.get(url(sid, "fs/ls", path="/home/user/t"))
    assert r.status == 200, r
    es = {e["name"]: e for e in r.json()["entries"]}
    assert set(es) == {"d1", "f", "link"}
    assert es["d1"]["type"] == "dir" and es["f"]["type"] == "file" and es["link"]["type"] == "symlink"
    assert es["link"]["symlink_target"] == "f"
    assert es["f"]["size"] == 6 and es["f"]["mode"] == 0o640 and es["f"]["permissions"] == "-rw-r-----"
    assert es["f"]["owner"] == "user" and es["f"]["group"] == "user"
    assert es["f"]["modified_time"].endswith("Z")
    r = client.get(url(sid, "fs/ls", path="/home/user/t", depth=3))
    paths = sorted(e["path"] for e in r.json()["entries"])
    assert paths == ["/home/user/t/d1", "/home/user/t/d1/d2", "/home/user/t/d1/d2/deep",
                     "/home/user/t/f", "/home/user/t/link"]
    r = client.get(url(sid, "fs/stat", path="t/link"))
    assert r.status == 200 and r.json()["entry"]["type"] == "symlink", r
    assert r.json()["entry"]["symlink_target"] == "f"
    r = client.get(url(sid, "fs/stat", path="/"))
    assert r.status == 200 and r.json()["entry"]["type"] == "dir" and r.json()["entry"]["name"] == "/"
    assert client.get(url(sid, "fs/exists", path="t/f")).json() == {"exists": True}
    assert client.get(url(sid, "fs/exists", path="t/nope")).json() == {"exists": False}
    assert client.get(url(sid, "fs/exists", path="t/f/under-a-file")).json() == {"exists": False}


def test_mkdir_rm_mv(client, sandbox):
    sid = sandbox["id"]
    r = client.post(url(sid, "fs/mkdir"), {"path": "/home/user/x/y/z"})
    assert r.status == 201 and r.json()["entry"]["type"] == "dir", r
    assert client.sh(sid, "stat -c %u /home/user/x /home/user/x/y/z") == "1000\n1000\n"
    assert_error(client.post(url(sid, "fs/mkdir"), {"path": "/home/user/x/y/z"}), 409)
    assert_error(client.post(url(sid, "fs/mkdir"), {"path": "/home/user/q/r", "parents": False}), 404)
    put_file(client, sid, "/home/user/x/y/z/f", b"data")
    # mv: plain, refused over an existing destination unless asked
    r = client.post(url(sid, "fs/mv"), {"source": "/home/user/x/y/z/f", "destination": "/home/user/g"})
    assert r.status == 200 and r.json()["entry"]["path"] == "/home/user/g", r
    put_file(client, sid, "/home/user/h", b"other")
    assert_error(client.post(url(sid, "fs/mv"), {"source": "/home/user/g", "destination": "/home/user/h"}), 409)
    r = client.post(url(sid, "fs/mv"), {"source": "/home/user/g", "destination": "/home/user/h",
                                        "overwrite": True})
    assert r.status == 200 and get_file(client, sid, "/home/user/h").body == b"data"
    assert_error(client.post(url(sid, "fs/mv"), {"source": "/home/user/nope", "destination": "/home/user/n2"}),
                 404)
    # rm: file; a non-empty dir needs recursive
    assert client.post(url(sid, "fs/rm"), {"path": "/home/user/h"}).status == 204
    assert_error(client.post(url(sid, "fs/rm"), {"path": "/home/user/h"}), 404)
    put_file(client, sid, "/home/user/x/y/z/f2", b"data")
    assert_error(client.post(url(sid, "fs/rm"), {"path": "/home/user/x"}), 409)
    assert client.post(url(sid, "fs/rm"), {"path": "/home/user/x", "recursive": True}).status == 204
    assert client.get(url(sid, "fs/exists", path="/home/user/x")).json() == {"exists": False}
    assert_error(client.post(url(sid, "fs/rm"), {"path": "/"}), 400)


def test_errors(client, sandbox):
    sid = sandbox["id"]
    put_file(client, sid, "/home/user/file", b"x")
    assert_error(get_file(client, sid, "/home/user/missing"), 404)
    assert_error(client.get(url(sid, "fs/stat", path="/home/user/missing")), 404)
    assert_error(client.get(url(sid, "fs/ls", path="/home/user/missing")), 404)
    # not a directory
    assert_error(client.get(url(sid, "fs/ls", path="/home/user/file")), 400)
    assert_error(put_file(client, sid, "/home/user/file/sub", b"x"), 400)
    assert_error(get_file(client, sid, "/home/user"), 400)  # a directory is not a file
    client.sh(sid, "mkfifo /home/user/fifo")  # neither read nor write may block the agent
    assert_error(get_file(client, sid, "/home/user/fifo"), 400)
    assert_error(put_file(client, sid, "/home/user/fifo", b"x"), 400)
    # permission denied as `user`, allowed as root
    assert_error(put_file(client, sid, "/etc/sandpit-it", b"x"), 403)
    assert_error(client.post(url(sid, "fs/mkdir"), {"path": "/usr/sandpit-it"}), 403)
    client.sh(sid, "echo s > /root/secret && chmod 600 /root/secret", user="root")
    assert_error(get_file(client, sid, "/root/secret"), 403)
    assert_error(client.get(url(sid, "fs/ls", path="/root")), 403)
    assert_error(client.post(url(sid, "fs/rm"), {"path": "/etc/passwd"}), 403)
    assert get_file(client, sid, "/root/secret", user="root").body == b"s\n"
    r = put_file(client, sid, "/etc/sandpit-it", b"x", user="root")
    assert r.status == 200 and r.json()["entry"]["owner"] == "root"
    # bad input
    assert_error(client.get(url(sid, "files")), 400)
    assert_error(client.get(url(sid, "files", path="")), 400)
    assert_error(client.get(url(sid, "fs/ls", path="/", depth="0")), 400)
    assert_error(client.get(url(sid, "fs/ls", path="/", depth="x")), 400)
    assert_error(put_file(client, sid, "/tmp/m", b"x", mode="999"), 400)
    assert_error(client.get(url(sid, "files", path="/tmp", user="nosuchuser")), 400)
    assert_error(client.post(url(sid, "fs/mkdir"), raw="{not json"), 400)
    assert_error(client.post(url(sid, "fs/mkdir"), {"path": "/tmp/a", "bogus": 1}), 400)
    assert_error(client.post(url(sid, "fs/rm"), {"path": "/tmp", "recursive": "false"}), 400)
    assert_error(client.post(url(sid, "fs/mv"), {"source": 1, "destination": "/tmp/b"}), 400)
    assert_error(client.get(url(sid, "archive", path="/tmp", format="rar")), 400)
    assert_error(client.get(url(sid, "archive", path="/tmp", max_bytes="-1")), 400)
    assert_error(client.request("DELETE", url(sid, "files", path="/tmp/x")), 405)
    assert_error(client.get(url(sid, "fs/nope", path="/tmp")), 404)
    # sandbox not found
    for sub in ("files", "fs/ls", "fs/stat", "archive", "watch"):
        assert_error(client.get(url("nosuchsandbox", sub, path="/tmp")), 404)
    assert_error(put_file(client, "nosuchsandbox", "/tmp/x", b"x"), 404)


def test_disk_full_is_507(client, make_sandbox):
    sid = make_sandbox(disk="2Mi")["id"]
    body = assert_error(put_file(client, sid, "/tmp/big", os.urandom(3 << 20)), 507)
    assert "no space" in body["message"]
    tree = make_tar([({"name": "big"}, os.urandom(3 << 20))], gz=False)
    assert_error(upload(client, sid, "/tmp/t", tree), 507)


def test_not_running_sandbox_is_409(agent, client, sandbox):
    sid = sandbox["id"]
    os.kill(agent.runc_init_pid(sid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while client.sandbox(sid).json()["state"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.sandbox(sid).json()["state"] == "exited"
    assert_error(get_file(client, sid, "/etc/passwd"), 409)
    assert_error(put_file(client, sid, "/tmp/x", b"x"), 409)
    assert_error(client.get(url(sid, "fs/ls", path="/")), 409)
    assert_error(client.get(url(sid, "archive", path="/tmp")), 409)
    assert_error(client.get(url(sid, "watch", path="/tmp")), 409)


# --------------------------------------------------------------------------- attacks


def plant_links(client, sid, host_path):
    """As the sandbox user, links aiming at the host's files."""
    client.sh(sid, f"""cd ~ && ln -s {host_path} abs && ln -s /etc/shadow shadow &&
        ln -s ../../../../../../../..{host_path} rel && ln -s /tmp tmpdir && ln -s / rootdir &&
        ln -s /proc/self/root procroot && mkdir -p trap && ln -s {os.path.dirname(host_path)} trap/hostdir""")


def test_symlinks_never_reach_host_files(client, sandbox, host_secret):
    sid = sandbox["id"]
    hpath, hval = host_secret
    name = os.path.basename(hpath)
    plant_links(client, sid, hpath)
    shadow = host_shadow()
    for user in ("user", "root"):
        for p in ("/home/user/abs", "/home/user/rel", f"/home/user/tmpdir/{name}",
                  f"/home/user/rootdir{hpath}", f"/home/user/trap/hostdir/{name}",
                  f"/home/user/procroot{hpath}", f"/../../../..{hpath}", f"../../../../../..{hpath}",
                  "/home/user/shadow", "/home/user/procroot/etc/shadow"):
            r = get_file(client, sid, p, user=user)
            assert hval not in r.body and (not shadow.strip() or shadow not in r.body), f"{p} as {user}: {r}"
            assert r.status in (400, 403, 404), f"{p} as {user}: {r}"
            r = client.get(url(sid, "fs/stat", path=p, user=user))
            if r.status == 200:  # the link itself, or a sandbox file: never the host's
                e = r.json()["entry"]
                assert e["type"] == "symlink" or e["size"] != len(hval), (p, e)
    # listing through a link lists the sandbox's directory, not the host's
    for p in ("/home/user/tmpdir", "/home/user/trap/hostdir", "/home/user/rootdir/tmp"):
        r = client.get(url(sid, "fs/ls", path=p, user="root"))
        assert r.status == 200, r
        assert name not in [e["name"] for e in r.json()["entries"]]
    assert client.get(url(sid, "fs/ls", path="/home/user/procroot")).status in (400, 404)


def test_writes_through_links_stay_in_sandbox(client, sandbox, host_secret):
    sid = sandbox["id"]
    hpath, hval = host_secret
    name = os.path.basename(hpath)
    plant_links(client, sid, hpath)
    for user in ("user", "root"):
        for p in ("/home/user/abs", "/home/user/rel", f"/home/user/trap/hostdir/{name}",
                  f"/../../..{hpath}"):
            put_file(client, sid, p, b"OVERWRITTEN", user=user)
            put_file(client, sid, "/home/user/mvsrc", b"MOVED", user="root")
            client.post(url(sid, "fs/mv", user=user), {"source": "/home/user/mvsrc", "destination": p,
                                                       "overwrite": True})
            client.post(url(sid, "fs/rm", user=user), {"path": p})
            with open(hpath, "rb") as f:
                assert f.read() == hval, f"host file changed through {p} as {user}"
    # the write landed in the sandbox's own /tmp
    r = client.exec(sid, cmd=["cat", hpath], user="root")
    assert r.exit_code in (0, 1) and hval.decode() not in r.stdout
    with open("/etc/shadow", "rb") as f:
        before = f.read()
    put_file(client, sid, "/home/user/shadow", b"x", user="root")
    client.post(url(sid, "fs/rm"), {"path": "/home/user/shadow/../shadow", "recursive": True})
    with open("/etc/shadow", "rb") as f:
        assert f.read() == before


def test_download_never_contains_host_content(client, sandbox, host_secret):
    sid = sandbox["id"]
    hpath, hval = host_secret
    plant_links(client, sid, hpath)
    for p in ("/home/user", "/home/user/tmpdir", "/home/user/trap/hostdir", "/home/user/abs"):
        for fmt in ("tar.gz", "zip"):
            r = client.get(url(sid, "archive", path=p, format=fmt, user="root"))
            if r.status != 200:
                assert r.status in (400, 404), (p, r)
                continue
            if fmt == "zip":
                zf = zipfile.ZipFile(io.BytesIO(r.body))
                blobs = [zf.read(n) for n in zf.namelist()]
            else:
                tf = tarfile.open(fileobj=io.BytesIO(r.body))
                blobs = [tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()]
                for m in tf.getmembers():
                    assert not m.name.startswith("/") and ".." not in m.name.split("/")
            for b in blobs:
                assert hval not in b, f"host content in the archive of {p}"


def test_hostile_archives_cannot_escape(client, sandbox, host_secret):
    sid = sandbox["id"]
    hpath, hval = host_secret
    tag = rand_suffix()
    dotdot = make_tar([({"name": "ok.txt"}, b"fine"),
                       ({"name": f"../../../../../../../tmp/sandpit-it-evil-{tag}"}, b"evil")])
    r = upload(client, sid, "/home/user/up", dotdot)
    assert_error(r, 400)
    assert not os.path.exists(f"/tmp/sandpit-it-evil-{tag}")
    assert client.get(url(sid, "fs/exists", path="/home/user/up/ok.txt")).json() == {"exists": False}
    # absolute names land below the target directory
    absolute = make_tar([({"name": f"/tmp/sandpit-it-abs-{tag}"}, b"abs")])
    r = upload(client, sid, "/home/user/up", absolute)
    assert r.status == 200, r
    assert not os.path.exists(f"/tmp/sandpit-it-abs-{tag}")
    assert get_file(client, sid, f"/home/user/up/tmp/sandpit-it-abs-{tag}").body == b"abs"
    # a symlink out, then a file through it
    via_link = make_tar([({"name": "out", "type": tarfile.SYMTYPE, "linkname": os.path.dirname(hpath)}, None),
                         ({"name": f"out/sandpit-it-vialink-{tag}"}, b"evil"),
                         ({"name": "out2", "type": tarfile.SYMTYPE, "linkname": "/"}, None)])
    for user in ("user", "root"):
        r = upload(client, sid, f"/home/user/link-{user}", via_link, user=user)
        assert_error(r, 400)
        assert not os.path.exists(f"/tmp/sandpit-it-vialink-{tag}")
    # hard links to outside the tree, by ".." or absolute name
    for target in ("../../../../etc/shadow", hpath, "/etc/shadow"):
        hard = make_tar([({"name": "h", "type": tarfile.LNKTYPE, "linkname": target}, None)])
        r = upload(client, sid, "/home/user/hard", hard, user="root")
        assert r.status in (400, 404), r
        g = get_file(client, sid, "/home/user/hard/h", user="root")
        assert hval not in g.body and (not host_shadow().strip() or host_shadow() not in g.body)
    with open(hpath, "rb") as f:
        assert f.read() == hval
    # a planted symlink at the target directory's place is followed only inside the sandbox
    plant_links(client, sid, hpath)
    r = upload(client, sid, "/home/user/trap/hostdir", make_tar([({"name": f"planted-{tag}"}, b"p")]))
    assert r.status in (200, 403), r
    assert not os.path.exists(os.path.join(os.path.dirname(hpath), f"planted-{tag}"))
    # devices are refused
    dev = make_tar([({"name": "null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, None)])
    assert_error(upload(client, sid, "/home/user/dev", dev, user="root"), 400)


# --------------------------------------------------------------------------- archives


def test_archive_roundtrip_tar_gz_and_zip(client, sandbox):
    sid = sandbox["id"]
    body = make_tar([({"name": "top.txt", "mode": 0o640}, b"top"),
                     ({"name": "d", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
                     ({"name": "d/e/deep.bin", "mode": 0o600}, os.urandom(100000)),
                     ({"name": "d/ln", "type": tarfile.SYMTYPE, "linkname": "../top.txt"}, None),
                     ({"name": "d/hard", "type": tarfile.LNKTYPE, "linkname": "top.txt"}, None)])
    r = upload(client, sid, "/home/user/tree", body)
    assert r.status == 200, r
    assert r.json()["entries"] == 5 and r.json()["path"] == "/home/user/tree"
    out = client.sh(sid, "cd ~/tree && stat -c '%n %u %a' top.txt d d/e d/e/deep.bin && readlink d/ln && "
                         "cat d/hard && echo && stat -c %h top.txt")
    lines = out.split("\n")
    assert lines[:4] == ["top.txt 1000 640", "d 1000 755", "d/e 1000 755", "d/e/deep.bin 1000 600"], out
    assert lines[4:7] == ["../top.txt", "top", "2"], out
    want = {"top.txt": b"top", "d/e/deep.bin": client.get(url(sid, "files", path="tree/d/e/deep.bin")).body,
            "d/hard": b"top"}
    r = client.get(url(sid, "archive", path="/home/user/tree"))
    assert r.status == 200 and r.headers["Content-Type"] == "application/gzip", r
    tf = tarfile.open(fileobj=io.BytesIO(r.body))
    got = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
    assert got == want
    links = {m.name: m.linkname for m in tf.getmembers() if m.issym()}
    assert links == {"d/ln": "../top.txt"}
    r = client.get(url(sid, "archive", path="/home/user/tree", format="zip"))
    assert r.status == 200 and r.headers["Content-Type"] == "application/zip", r
    zf = zipfile.ZipFile(io.BytesIO(r.body))
    got = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/") and n != "d/ln"}
    assert got == want
    # a read-only directory listed before its contents still gets them, then its mode
    ro = make_tar([({"name": "ro", "type": tarfile.DIRTYPE, "mode": 0o555}, None),
                   ({"name": "ro/inside.txt", "mode": 0o444}, b"in")])
    r = upload(client, sid, "/home/user/rotree", ro)
    assert r.status == 200, r
    assert client.sh(sid, "stat -c %a ~/rotree/ro ~/rotree/ro/inside.txt; cat ~/rotree/ro/inside.txt") == \
        "555\n444\nin"
    # zip in, plain tar out
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("z/a.txt", "from zip")
    r = upload(client, sid, "/home/user/fromzip", zbuf.getvalue(), format="zip")
    assert r.status == 200, r
    r = client.get(url(sid, "archive", path="/home/user/fromzip", format="tar"))
    tf = tarfile.open(fileobj=io.BytesIO(r.body))
    assert tf.extractfile("z/a.txt").read() == b"from zip"
    # one file
    r = client.get(url(sid, "archive", path="/home/user/tree/top.txt"))
    tf = tarfile.open(fileobj=io.BytesIO(r.body))
    assert tf.getnames() == ["top.txt"]


def test_archive_limits_413(client, sandbox):
    sid = sandbox["id"]
    put_file(client, sid, "/home/user/lim/a", b"a" * 5000)
    put_file(client, sid, "/home/user/lim/b", b"b" * 5000)
    assert client.get(url(sid, "archive", path="/home/user/lim", max_bytes="10000")).status == 200
    body = assert_error(client.get(url(sid, "archive", path="/home/user/lim", max_bytes="9999")), 413)
    assert "max_bytes" in body["message"]
    # upload: a small body that inflates past the limit (a "zip bomb")
    bomb = make_tar([({"name": "zeros"}, b"\0" * (8 << 20))])
    assert len(bomb) < 100000
    body = assert_error(upload(client, sid, "/home/user/bomb", bomb, max_bytes=str(1 << 20)), 413)
    assert "max_bytes" in body["message"]
    assert client.get(url(sid, "fs/exists", path="/home/user/bomb/zeros")).json() == {"exists": False}
    # the compressed body itself past the limit
    assert_error(upload(client, sid, "/home/user/bomb", bomb, max_bytes="1000"), 413)
    # not an archive
    assert_error(upload(client, sid, "/home/user/junk", b"this is not an archive" * 100), 400)
    assert_error(upload(client, sid, "/home/user/junk", b""), 400)
    # unreadable subtree for the user: 403 before anything is sent
    client.sh(sid, "mkdir -p /home/user/lim/private && chown root /home/user/lim/private && "
                   "chmod 700 /home/user/lim/private", user="root")
    assert_error(client.get(url(sid, "archive", path="/home/user/lim")), 403)


# --------------------------------------------------------------------------- watch


def watch_until(stream, pred, limit=200):
    seen = []
    for ev in stream:
        seen.append(ev)
        if pred(ev) or len(seen) >= limit:
            break
    return seen


def test_watch_recursive(client, sandbox):
    sid = sandbox["id"]
    client.sh(sid, "mkdir -p ~/w/sub")
    s = client.stream("GET", url(sid, "watch", path="/home/user/w", recursive="true"), timeout=30)
    assert not hasattr(s, "body"), s
    with s:
        assert s.next_event() == {"type": "start"}
        client.sh(sid, "cd ~/w && echo hi > a && mkdir newdir && echo x > newdir/inner && "
                       "echo y > sub/deep && mv a b && rm b && mkdir -p t/u/v && echo z > t/u/v/f && touch DONE")
        seen = watch_until(s, lambda e: e.get("name") == "DONE")
    got = [(e["type"], e["path"]) for e in seen]
    for want in [("create", "/home/user/w/a"), ("write", "/home/user/w/a"), ("create", "/home/user/w/newdir"),
                 ("create", "/home/user/w/newdir/inner"), ("create", "/home/user/w/sub/deep"),
                 ("rename", "/home/user/w/a"), ("create", "/home/user/w/b"), ("remove", "/home/user/w/b"),
                 ("create", "/home/user/w/t/u"), ("create", "/home/user/w/t/u/v"), ("create", "/home/user/w/t/u/v/f")]:
        assert want in got, f"{want} not in {got}"
    assert [e["is_dir"] for e in seen if e["path"] == "/home/user/w/newdir"][0] is True


def test_watch_not_recursive_and_api_writes(client, sandbox):
    sid = sandbox["id"]
    client.sh(sid, "mkdir -p ~/w2/sub")
    s = client.stream("GET", url(sid, "watch", path="w2"), timeout=30)
    with s:
        assert s.next_event() == {"type": "start"}
        client.sh(sid, "echo y > ~/w2/sub/deep")
        put_file(client, sid, "/home/user/w2/viaapi", b"z")  # changes made by the agent too
        seen = watch_until(s, lambda e: e.get("name") == "viaapi")
    paths = [e.get("path") for e in seen]
    assert "/home/user/w2/viaapi" in paths and "/home/user/w2/sub/deep" not in paths, seen


def test_watch_ends_when_sandbox_is_deleted(agent, client, make_sandbox):
    sid = make_sandbox()["id"]
    client.sh(sid, "mkdir -p /tmp/w/sub")
    s = client.stream("GET", url(sid, "watch", path="/tmp/w", recursive="1"), timeout=30)
    with s:
        assert s.next_event() == {"type": "start"}
        client.sh(sid, "mkdir /tmp/w/new")  # a watch added after the start, too
        assert watch_until(s, lambda e: e.get("name") == "new")[-1]["type"] == "create"
        assert client.delete(f"/v1/sandboxes/{sid}").status == 204
        rest = watch_until(s, lambda e: False)  # read to the end: the stream must end
    assert all(e["type"] in ("remove", "keepalive") for e in rest), rest
    agent.settle()
    assert not agent.mounts_under_state()


def test_watch_streams_are_bounded(client, sandbox):
    sid = sandbox["id"]
    streams = []
    try:
        for _ in range(32):
            s = client.stream("GET", url(sid, "watch", path="/tmp"), timeout=30)
            assert not hasattr(s, "body"), s
            assert s.next_event() == {"type": "start"}
            streams.append(s)
        assert_error(client.get(url(sid, "watch", path="/tmp")), 429)
    finally:
        for s in streams:
            s.close()
    deadline = time.monotonic() + 10
    while True:  # the agent notices the closed streams on its own time
        s = client.stream("GET", url(sid, "watch", path="/tmp"), timeout=30)
        if not hasattr(s, "body") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not hasattr(s, "body"), s
    s.close()


def test_watch_errors(client, sandbox):
    sid = sandbox["id"]
    assert_error(client.get(url(sid, "watch", path="/home/user/missing")), 404)
    put_file(client, sid, "/home/user/afile", b"x")
    assert_error(client.get(url(sid, "watch", path="/home/user/afile")), 400)
    assert_error(client.get(url(sid, "watch", path="/root")), 403)


# --------------------------------------------------------------------------- CLI


def cli(agent, *args, input=None):
    from conftest import REPO
    return subprocess.run([str(REPO / "build" / "bin" / "sandpit"), "--server", f"unix://{agent.socket}",
                           *args], capture_output=True, timeout=120, input=input)


def one_line_error(r):
    assert r.returncode != 0, r
    err = r.stderr.decode()
    assert err.startswith("sandpit: ") and err.count("\n") == 1, err
    return err


def test_cli_cp_files_and_trees(agent, client, sandbox, tmp_path):
    sid = sandbox["id"]
    src = tmp_path / "f.bin"
    data = os.urandom(300000)
    src.write_bytes(data)
    r = cli(agent, "cp", str(src), f"{sid}:/home/user/in/f.bin")
    assert r.returncode == 0, r
    assert client.sh(sid, "stat -c %u:%s /home/user/in/f.bin") == f"1000:{len(data)}\n"
    r = cli(agent, "cp", str(src), f"{sid}:/home/user/in/")  # into a directory: keeps the name
    assert r.returncode == 0 and get_file(client, sid, "/home/user/in/f.bin").body == data, r
    r = cli(agent, "cp", f"{sid}:in/f.bin", str(tmp_path / "back.bin"))
    assert r.returncode == 0 and (tmp_path / "back.bin").read_bytes() == data, r
    r = cli(agent, "cp", "-", f"{sid}:/tmp/stdin.txt", input=b"from stdin")
    assert r.returncode == 0 and get_file(client, sid, "/tmp/stdin.txt").body == b"from stdin", r
    r = cli(agent, "cp", f"{sid}:/tmp/stdin.txt", "-")
    assert r.returncode == 0 and r.stdout == b"from stdin", r
    # a tree, both ways
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("A")
    (tree / "sub" / "deeper" / "b.txt").write_text("B")
    os.symlink("a.txt", tree / "link")
    r = cli(agent, "cp", str(tree), f"{sid}:/home/user/tree")
    assert r.returncode == 0, r
    assert client.sh(sid, "cd ~/tree && cat a.txt sub/deeper/b.txt && readlink link && stat -c %u sub") == \
        "ABa.txt\n1000\n"
    r = cli(agent, "cp", f"{sid}:/home/user/tree", str(tmp_path / "tree2"))
    assert r.returncode == 0, r
    assert (tmp_path / "tree2" / "sub" / "deeper" / "b.txt").read_text() == "B"
    assert os.readlink(tmp_path / "tree2" / "link") == "a.txt"
    # errors: one line on stderr, non-zero exit
    assert "does not exist" in one_line_error(cli(agent, "cp", f"{sid}:/nope", str(tmp_path / "x")))
    assert not (tmp_path / "x").exists()
    assert "permission denied" in one_line_error(cli(agent, "cp", str(src), f"{sid}:/etc/f"))
    assert cli(agent, "cp", "--user", "root", str(src), f"{sid}:/etc/f").returncode == 0
    assert "not found" in one_line_error(cli(agent, "cp", str(src), "nosuchbox:/tmp/f"))
    one_line_error(cli(agent, "cp", str(src), str(tmp_path / "y")))


def test_cli_fs(agent, client, sandbox):
    sid = sandbox["id"]
    r = cli(agent, "fs", "mkdir", sid, "/home/user/d/e")
    assert r.returncode == 0, r
    put_file(client, sid, "/home/user/d/e/f.txt", b"hello")
    client.sh(sid, "ln -s e/f.txt ~/d/l")
    r = cli(agent, "fs", "ls", sid, "/home/user/d", "--depth", "2")
    out = r.stdout.decode()
    assert r.returncode == 0 and out.splitlines()[0].split() == ["TYPE", "PERMISSIONS", "OWNER", "SIZE",
                                                                 "MODIFIED", "PATH"], r
    assert "/home/user/d/e/f.txt" in out and "/home/user/d/l -> e/f.txt" in out
    r = cli(agent, "fs", "ls", "--json", sid, "d")
    import json
    assert r.returncode == 0 and {e["name"] for e in json.loads(r.stdout)["entries"]} == {"e", "l"}, r
    r = cli(agent, "fs", "stat", sid, "d/e/f.txt")
    assert r.returncode == 0 and "size            5" in r.stdout.decode(), r
    assert cli(agent, "fs", "mv", sid, "d/e/f.txt", "d/g.txt").returncode == 0
    assert get_file(client, sid, "/home/user/d/g.txt").body == b"hello"
    assert "not empty" in one_line_error(cli(agent, "fs", "rm", sid, "/home/user/d"))
    assert cli(agent, "fs", "rm", "-r", sid, "/home/user/d").returncode == 0
    assert client.get(url(sid, "fs/exists", path="/home/user/d")).json() == {"exists": False}
    assert "does not exist" in one_line_error(cli(agent, "fs", "stat", sid, "/home/user/d"))
    assert "permission denied" in one_line_error(cli(agent, "fs", "mkdir", sid, "/etc/x"))
    assert cli(agent, "fs", "mkdir", "--user", "root", sid, "/etc/x").returncode == 0
