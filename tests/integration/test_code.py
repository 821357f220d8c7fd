"""Code interpreter: run_code in Python, JavaScript and bash with stateful
contexts and rich results (docs/code-interpreter.md)."""

import base64
import os
import struct
import time
import zlib

import pytest

from conftest import Response, assert_error, need_default_template, read_int, wait_for


class Run:
    """What one POST .../code produced."""

    def __init__(self, status, error=None, events=None):
        self.status = status
        self.error = error
        self.events = events or []  # [(t, ev)]
        evs = [ev for _, ev in self.events]
        self.types = [ev["type"] for ev in evs]
        self.results = [ev for ev in evs if ev["type"] == "result"]
        self.main = next((ev for ev in self.results if ev.get("is_main_result")), None)
        errs = [ev for ev in evs if ev["type"] == "error"]
        self.err = errs[0] if errs else None
        self.stdout = "".join(ev["text"] for ev in evs if ev["type"] == "stdout")
        self.stderr = "".join(ev["text"] for ev in evs if ev["type"] == "stderr")
        ends = [ev for ev in evs if ev["type"] == "end_of_execution"]
        self.end = ends[0] if ends else None
        counts = [ev["execution_count"] for ev in evs if ev["type"] == "number_of_executions"]
        self.count = counts[0] if counts else None

    @property
    def text(self):
        assert self.main is not None, f"no main result: {self}"
        return self.main["text"]

    def __repr__(self):
        return f"<Run status={self.status} error={self.error} events={[ev for _, ev in self.events][-8:]}>"


def open_run(client, sid, code, **kw):
    body = dict(kw, code=code)
    return client.stream("POST", f"/v1/sandboxes/{sid}/code", body, timeout=120)


def run_code(client, sid, code, **kw):
    s = open_run(client, sid, code, **kw)
    if isinstance(s, Response):
        try:
            err = s.json()
        except ValueError:
            err = s.body
        return Run(s.status, error=err)
    with s:
        s.read_all()
    r = Run(200, events=s.events)
    assert r.end is not None and r.types[-1] == "end_of_execution", f"stream did not end properly: {r}"
    return r


def ok(r):
    assert r.status == 200 and r.err is None, r
    return r


def ctx_path(sid, ctx=""):
    return f"/v1/sandboxes/{sid}/contexts" + (f"/{ctx}" if ctx else "")


@pytest.fixture
def dsb(make_sandbox):
    """A sandbox from the default template (python3, numpy, pandas, matplotlib, node)."""
    need_default_template()
    return make_sandbox(template="default", memory="1Gi")


def png_decode(data):
    """Checks the PNG signature, walks the chunks (CRCs included), inflates the
    image data and checks its size against the header: (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    off, idat, ihdr = 8, b"", None
    while off < len(data):
        (length,) = struct.unpack(">I", data[off:off + 4])
        ctype = data[off + 4:off + 8]
        body = data[off + 8:off + 8 + length]
        (crc,) = struct.unpack(">I", data[off + 8 + length:off + 12 + length])
        assert zlib.crc32(ctype + body) == crc, f"bad CRC in {ctype}"
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat += body
        off += 12 + length
        if ctype == b"IEND":
            break
    assert ihdr is not None and idat, "no IHDR or IDAT"
    width, height, depth, color = ihdr[:4]
    assert depth == 8 and width > 0 and height > 0, ihdr
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * channels), "image data does not match the header"
    return width, height


# --------------------------------------------------------------------------- Python


def test_python_state_and_main_result(client, dsb):
    sid = dsb["id"]
    a = ok(run_code(client, sid, "x = 1"))
    assert a.main is None and a.results == [], a
    b = ok(run_code(client, sid, "x + 1"))
    assert b.text == "2"
    assert b.count == a.count + 1, (a.count, b.count)
    assert b.types[0] == "number_of_executions" and b.end["timed_out"] is False
    # The REPL's text form; dicts are JSON too.
    c = ok(run_code(client, sid, "{'k': [1, 2], 's': 'v'}"))
    assert c.text == "{'k': [1, 2], 's': 'v'}" and c.main["json"] == {"k": [1, 2], "s": "v"}
    assert ok(run_code(client, sid, "'abc'")).text == "'abc'"


def test_python_matplotlib_png(client, dsb):
    code = ("import matplotlib.pyplot as plt\n"
            "plt.plot([1, 2, 3], [1, 4, 9])\n"
            "plt.title('squares')\n")
    r = ok(run_code(client, dsb["id"], code))
    pngs = [ev for ev in r.results if "png" in ev]
    assert len(pngs) == 1, r
    assert pngs[0]["is_main_result"] is False and pngs[0]["text"].startswith("<Figure")
    w, h = png_decode(base64.b64decode(pngs[0]["png"]))
    assert w > 100 and h > 100
    # plt.show() emits where it is called, and the figure is not repeated.
    r2 = ok(run_code(client, dsb["id"], "plt.plot([0, 1]); plt.show(); print('after show')"))
    assert [("png" in ev) for ev in r2.results] == [True], r2
    assert r2.stdout == "after show\n"
    assert not any("non-GUI backend" in ev.get("text", "") for _, ev in r2.events), r2


def test_python_dataframe_html(client, dsb):
    r = ok(run_code(client, dsb["id"], "import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})"))
    assert "<table" in r.main["html"] and "</table>" in r.main["html"], r.main
    assert "a" in r.main["text"] and "x" in r.main["text"]


def test_python_error_then_next_run_works(client, dsb):
    sid = dsb["id"]
    ok(run_code(client, sid, "y = 5"))
    r = run_code(client, sid, "1/0")
    assert r.status == 200 and r.err is not None, r
    assert r.err["name"] == "ZeroDivisionError" and r.err["value"] == "division by zero"
    assert "Traceback" in r.err["traceback"] and "ZeroDivisionError" in r.err["traceback"]
    assert "<cell-" in r.err["traceback"] and "python.py" not in r.err["traceback"], r.err["traceback"]
    assert r.main is None
    assert ok(run_code(client, sid, "y * 2")).text == "10"
    s = run_code(client, sid, "def f(:")
    assert s.err["name"] == "SyntaxError", s


def test_python_timeout_interrupts_and_keeps_state(client, dsb):
    sid = dsb["id"]
    ok(run_code(client, sid, "x = 41"))
    r = run_code(client, sid, "import time\nprint('sleeping')\ntime.sleep(100)", timeout=1)
    assert r.status == 200, r
    assert r.end["timed_out"] is True, r
    assert r.err["name"] == "TimeoutError" and "time.sleep" in r.err["traceback"], r.err
    assert r.stdout == "sleeping\n"
    assert ok(run_code(client, sid, "x + 1")).text == "42"


def test_python_contexts_do_not_share_state(client, dsb):
    sid = dsb["id"]
    r1 = client.post(ctx_path(sid), {"language": "python"})
    r2 = client.post(ctx_path(sid), {"language": "python", "cwd": "/tmp"})
    assert r1.status == 201 and r2.status == 201, (r1, r2)
    c1, c2 = r1.json(), r2.json()
    assert c1["id"] != c2["id"] and c1["language"] == "python" and c2["cwd"] == "/tmp"
    assert c1["state"] == "ready" and c1["cwd"] == "/home/user"
    ok(run_code(client, sid, "x = 'one'", context=c1["id"]))
    r = run_code(client, sid, "x", context=c2["id"])
    assert r.err and r.err["name"] == "NameError", r
    assert ok(run_code(client, sid, "import os; os.getcwd()", context=c2["id"])).text == "'/tmp'"
    assert ok(run_code(client, sid, "x", context=c1["id"])).text == "'one'"
    # nor with the default context
    assert run_code(client, sid, "x").err["name"] == "NameError"
    ids = {c["id"] for c in client.get(ctx_path(sid)).json()["contexts"]}
    assert ids == {c1["id"], c2["id"], "python"}, ids


def test_python_restart_clears_state(client, dsb):
    sid = dsb["id"]
    c = client.post(ctx_path(sid), {}).json()
    ok(run_code(client, sid, "x = 1", context=c["id"]))
    r = client.post(ctx_path(sid, c["id"]) + "/restart")
    assert r.status == 200 and r.json()["state"] == "ready", r
    assert run_code(client, sid, "x", context=c["id"]).err["name"] == "NameError"
    # the default context restarts too
    ok(run_code(client, sid, "z = 3"))
    assert client.post(ctx_path(sid, "python") + "/restart").status == 200
    assert run_code(client, sid, "z").err["name"] == "NameError"


def test_python_env_applies_to_one_run(client, dsb):
    sid = dsb["id"]
    r = ok(run_code(client, sid, "import os, subprocess\n"
                    "print(subprocess.run(['sh', '-c', 'echo $FOO'], capture_output=True, text=True).stdout, end='')\n"
                    "os.environ.get('FOO')", env={"FOO": "bar"}))
    assert r.text == "'bar'" and r.stdout == "bar\n"
    assert ok(run_code(client, sid, "'FOO' in os.environ")).text == "False"


def test_python_subprocess_output_and_display(client, dsb):
    r = ok(run_code(client, dsb["id"], "import os\nos.system('echo from-a-child; echo to-err >&2')\n"
                    "display({'a': 1})\nNone"))
    assert r.stdout == "from-a-child\n" and r.stderr == "to-err\n", r
    assert [ev.get("json") for ev in r.results] == [{"a": 1}]


def test_streaming_arrives_before_the_end(agent, client, dsb):
    """The run waits for a file that the test creates only after it has seen
    the first line: buffered output would never get there."""
    sid = dsb["id"]
    code = ("import os, time\n"
            "print('first', flush=True)\n"
            "for _ in range(600):\n"
            "    if os.path.exists('/tmp/go'): break\n"
            "    time.sleep(0.05)\n"
            "print('saw the file' if os.path.exists('/tmp/go') else 'no file')\n")
    s = open_run(client, sid, code)
    assert not isinstance(s, Response), s
    with s:
        seen = ""
        for ev in s:
            assert ev["type"] != "end_of_execution", s.events
            if ev["type"] == "stdout":
                seen += ev["text"]
                if seen.endswith("\n"):
                    break
        assert seen == "first\n", s.events
        client.sh(sid, "touch /tmp/go", user="root")
        s.read_all()
    r = Run(200, events=s.events)
    assert r.stdout == "first\nsaw the file\n", r
    assert r.types[-1] == "end_of_execution"


def test_dead_context_is_reported_and_restartable(client, dsb):
    sid = dsb["id"]
    ok(run_code(client, sid, "x = 1"))
    r = run_code(client, sid, "import os\nos._exit(7)")
    assert r.status == 200 and r.err["name"] == "ContextDied", r
    assert "status 7" in r.err["value"], r.err
    again = run_code(client, sid, "1")
    assert again.status == 409, again
    listed = {c["id"]: c for c in client.get(ctx_path(sid)).json()["contexts"]}
    assert listed["python"]["state"] == "dead" and "status 7" in listed["python"]["error"]
    assert client.post(ctx_path(sid, "python") + "/restart").status == 200
    assert ok(run_code(client, sid, "2 + 2")).text == "4"


def test_client_going_away_interrupts_the_run(client, dsb):
    sid = dsb["id"]
    ok(run_code(client, sid, "kept = 'yes'"))
    s = open_run(client, sid, "import time\nprint('started', flush=True)\ntime.sleep(300)\nprint('finished')")
    assert not isinstance(s, Response), s
    with s:
        ev = s.next_event()
        while ev["type"] != "stdout":
            ev = s.next_event()
    # The agent interrupted the abandoned run: the context is free and kept its state.
    r = ok(run_code(client, sid, "kept"))
    assert r.text == "'yes'" and "finished" not in r.stdout, r


def test_runs_on_one_context_queue(client, dsb):
    import threading
    sid = dsb["id"]
    ok(run_code(client, sid, "n = 0"))
    out = {}

    def go(i):
        out[i] = run_code(client, sid, "import time\nm = n\ntime.sleep(0.3)\nn = m + 1\nn")

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Serialised: no two runs read the same n.
    assert sorted(ok(r).text for r in out.values()) == ["1", "2", "3"], out
    assert ok(run_code(client, sid, "n")).text == "3"


# --------------------------------------------------------------------------- JavaScript


def test_javascript_state_await_and_errors(client, dsb):
    sid = dsb["id"]
    ok(run_code(client, sid, "let x = 1; var y = 2", language="javascript"))
    assert ok(run_code(client, sid, "x + y", language="javascript")).text == "3"
    r = ok(run_code(client, sid, "const z = await new Promise(r => setTimeout(() => r(40), 20)); z + 2",
                    language="js"))
    assert r.text == "42"
    assert ok(run_code(client, sid, "z", language="javascript")).text == "40"
    o = ok(run_code(client, sid, "console.log('hi'); ({a: [1, 2]})", language="javascript"))
    assert o.stdout == "hi\n" and o.main["json"] == {"a": [1, 2]}
    e = run_code(client, sid, "null.foo", language="javascript")
    assert e.err["name"] == "TypeError" and "null" in e.err["value"], e
    assert "<cell-" in e.err["traceback"] and "javascript.js" not in e.err["traceback"], e.err
    e2 = run_code(client, sid, "await Promise.reject(new RangeError('nope'))", language="javascript")
    assert e2.err["name"] == "RangeError" and e2.err["value"] == "nope", e2
    assert ok(run_code(client, sid, "x", language="javascript")).text == "1"
    t = run_code(client, sid, "while (true) {}", language="javascript", timeout=1)
    assert t.end["timed_out"] is True and t.err["name"] == "TimeoutError", t
    assert ok(run_code(client, sid, "x + 1", language="javascript")).text == "2"


# --------------------------------------------------------------------------- bash


def test_bash_cd_persists_and_exit_codes(client, dsb):
    sid = dsb["id"]
    r = ok(run_code(client, sid, "cd /tmp\nexport V=7", language="bash"))
    assert r.end["exit_code"] == 0
    r = ok(run_code(client, sid, "pwd; echo $V; echo oops >&2", language="bash"))
    assert r.stdout == "/tmp\n7\n" and r.stderr == "oops\n"
    f = run_code(client, sid, "false", language="bash")
    assert f.end["exit_code"] == 1 and f.err["name"] == "ExitCode" and f.err["value"] == "1", f
    g = run_code(client, sid, "echo before; (exit 3)", language="bash")
    assert g.end["exit_code"] == 3 and g.stdout == "before\n", g
    t = run_code(client, sid, "sleep 100; echo after", language="bash", timeout=1)
    assert t.end["timed_out"] is True and "after" not in t.stdout, t
    assert ok(run_code(client, sid, "pwd", language="bash")).stdout == "/tmp\n"


# --------------------------------------------------------------------------- errors, security, leaks


def test_code_errors(client, dsb):
    sid = dsb["id"]
    p = f"/v1/sandboxes/{sid}/code"
    body = assert_error(client.post(p, {"code": "1", "language": "cobol"}), 400)
    assert "cobol" in body["message"]
    assert_error(client.post(p, {"code": "1", "language": "python", "context": "python"}), 400)
    assert_error(client.post(p, {"language": "python"}), 400)
    assert_error(client.post(p, {"code": 5}), 400)
    assert_error(client.post(p, {"code": "1", "timeout": -1}), 400)
    assert_error(client.post(p, {"code": "1", "bogus": 1}), 400)
    assert_error(client.post(p, raw=b"{not json"), 400)
    assert_error(client.get(p), 405)
    assert_error(client.post(p, {"code": "1", "context": "nosuchctx"}), 404)
    assert_error(client.post("/v1/sandboxes/nosuchsandbox/code", {"code": "1"}), 404)
    assert_error(client.get("/v1/sandboxes/nosuchsandbox/contexts"), 404)
    assert_error(client.post(ctx_path(sid), {"language": "cobol"}), 400)
    assert_error(client.post(ctx_path(sid), {"cwd": "relative"}), 400)
    assert_error(client.post(ctx_path(sid), {"cwd": "/no/such/dir"}), 400)
    assert_error(client.delete(ctx_path(sid, "nosuchctx")), 404)
    assert_error(client.post(ctx_path(sid, "nosuchctx") + "/restart"), 404)
    assert_error(client.post(ctx_path(sid, "x") + "/bogus"), 404)
    c = client.post(ctx_path(sid), {"language": "bash"}).json()
    assert client.delete(ctx_path(sid, c["id"])).status == 204
    assert_error(client.post(p, {"code": "1", "context": c["id"]}), 404)
    assert client.get(ctx_path(sid)).json()["contexts"] == []


# Forks until the sandbox's pids limit refuses, then holds every pid; the
# children exit when it is killed (EOF on a pipe only it can write).
PIDS_FILLER = r"""
import os
r, w = os.pipe()
n = 0
while True:
    try:
        pid = os.fork()
    except BlockingIOError:
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    n += 1
print("full after", n, flush=True)
os.read(r, 1)
"""


def test_pids_limit_is_503_for_exec_and_kernels(agent, client, make_sandbox):
    """A kernel that cannot start because the sandbox's pids limit is reached is
    the same 503 as an exec's spawn there (docs/agent-api.md, "Errors"), and the
    interpreter works again once pids are free."""
    need_default_template()
    sid = make_sandbox(template="default", memory="1Gi", pids=16)["id"]
    pids = agent.cgroup_dir("pids", sid)
    bg = client.exec(sid, cmd=["python3", "-c", PIDS_FILLER], background=True)
    assert bg.status == 201, bg
    filler = bg.error["pid"]
    wait_for(lambda: read_int(pids / "pids.current") >= 16, 30, what="the sandbox's pids all taken")
    assert_error(client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": ["true"]}), 503)
    assert_error(client.post(f"/v1/sandboxes/{sid}/code", {"code": "1"}), 503)
    assert_error(client.post(ctx_path(sid), {"language": "python"}), 503)
    assert client.get(ctx_path(sid)).json()["contexts"] == []  # nothing half-started stays
    assert client.post(f"/v1/sandboxes/{sid}/processes/{filler}/signal", {"signal": "KILL"}).status == 204
    wait_for(lambda: read_int(pids / "pids.current") < 16, 30, what="the filler's pids freed")
    assert ok(run_code(client, sid, "6 * 7")).text == "42"


def test_code_mounts_are_read_only(client, dsb):
    """Nothing in the sandbox, root included, can plant files in the agent's
    socket dir or change the drivers."""
    sid = dsb["id"]
    ok(run_code(client, sid, "1"))
    for d in ("/.sandpit-code", "/.sandpit-kernels"):
        r = client.exec(sid, shell=f"touch {d}/x; ln -s /etc/passwd {d}/y; echo hi > {d}/python.py", user="root")
        assert r.exit_code != 0 and "Read-only file system" in r.stderr, r
    r = client.exec(sid, shell="ls -A /.sandpit-code")
    assert r.exit_code == 0 and r.stdout == "", r  # listening sockets are gone once accepted


IMPOSTOR = r"""
import glob, json, socket, time
end = time.time() + 20
tried = set()
while time.time() < end:
    for path in glob.glob('/.sandpit-code/*.sock'):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.sendall(b'{"type":"hello","token":"guess"}\n'
                      b'{"type":"result","text":"pwned","is_main_result":true}\n'
                      b'{"type":"end_of_execution"}\n')
            tried.add(path)
            print('connected', path, flush=True)
        except OSError:
            pass
    time.sleep(0.001)
"""


def test_impostor_kernel_is_refused(client, dsb):
    """Code in the sandbox races the kernel to the agent's listening socket with
    a guessed token: the agent must ignore it and take the real kernel."""
    sid = dsb["id"]
    bg = client.exec(sid, cmd=["python3", "-c", IMPOSTOR], background=True)
    assert bg.status == 201, bg
    pid = bg.error["pid"]
    for _ in range(3):
        c = client.post(ctx_path(sid), {"language": "python"})
        assert c.status == 201, c
        r = ok(run_code(client, sid, "6 * 7", context=c.json()["id"]))
        assert r.text == "42" and "pwned" not in str(r.events), r
    assert client.post(f"/v1/sandboxes/{sid}/processes/{pid}/signal", {"signal": "KILL"}).status == 204
    out = client.reconnect(sid, pid)
    assert "connected /.sandpit-code/" in out.stdout, f"the impostor never got a connection in: {out}"


def test_code_leaves_nothing_behind(agent, client, make_sandbox):
    need_default_template()

    def agent_fds():
        return len(os.listdir(f"/proc/{agent.proc.pid}/fd"))

    def settled_fds():
        # The metrics sampler and finishing requests hold fds for moments: take the
        # lowest of a few looks.
        low = None
        for _ in range(5):
            n = agent_fds()
            low = n if low is None else min(low, n)
            time.sleep(0.1)
        return low

    sb = make_sandbox(template="default")
    sid = sb["id"]
    base = settled_fds()
    for lang, code in (("python", "1"), ("javascript", "1"), ("bash", "true")):
        ok(run_code(client, sid, code, language=lang))
    client.post(ctx_path(sid), {"language": "python"})
    n = settled_fds()
    assert n >= base + 8, (n, base)  # two per context: init's connection and the kernel's
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    wait_for(lambda: agent_fds() <= base, 10, what=f"agent fds back to {base}")
    assert_error(client.get(ctx_path(sid)), 404)


# --------------------------------------------------------------------------- CLI


def test_cli_code(agent, client, dsb, tmp_path):
    import subprocess
    from conftest import REPO
    cli = [str(REPO / "build" / "bin" / "sandpit"), "--server", f"unix://{agent.socket}", "code"]
    sid = dsb["id"]

    def sandpit(*args, stdin=None):
        return subprocess.run(cli + list(args), input=stdin, capture_output=True, text=True, timeout=120)

    r = sandpit(sid, "import sys; print('out'); print('err', file=sys.stderr); n = 20; n + 1")
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n21\n", "err\n"), r
    r = sandpit(sid, "-", stdin="n * 2\n")
    assert (r.returncode, r.stdout) == (0, "40\n"), r
    r = sandpit("--lang", "bash", sid, "cd /tmp; (exit 4)")
    assert r.returncode == 1 and "ExitCode: 4" in r.stderr, r
    r = sandpit(sid, "1/0")
    assert r.returncode == 1 and "ZeroDivisionError: division by zero" in r.stderr, r
    r = sandpit("--timeout", "1", sid, "import time; time.sleep(60)")
    assert r.returncode == 124 and "TimeoutError" in r.stderr, r
    images = tmp_path / "img"
    r = sandpit("--save-images", str(images), sid,
                "import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.show(); plt.bar([1], [2])")
    assert r.returncode == 0, r
    saved = sorted(os.listdir(images))
    assert saved == ["image-1.png", "image-2.png"], (saved, r.stdout)
    for name in saved:
        png_decode((images / name).read_bytes())
    assert f"[image saved to {images}/image-1.png]" in r.stdout
    r = sandpit("--lang", "cobol", sid, "1")
    assert r.returncode == 1 and "unknown language" in r.stderr, r
    r = sandpit("--context", "nope", sid, "1")
    assert r.returncode == 1 and "not found" in r.stderr, r
