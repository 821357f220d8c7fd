"""Processes: exec, streaming, stdin, background processes, signals."""

import base64

import pytest

from conftest import assert_error, wait_for, Response


def exec_path(sid):
    return f"/v1/sandboxes/{sid}/exec"


def proc_entry(client, sid, pid):
    procs = {p["pid"]: p for p in client.processes(sid)}
    assert pid in procs, f"process {pid} is not in the process list: {procs}"
    return procs[pid]


def sleeps(client, sid):
    """args of every `sleep` process in the sandbox."""
    r = client.exec(sid, shell="ps -C sleep -o args= || true")
    assert r.exit is not None and r.exit_code == 0, r
    return r.stdout


def test_stdout_stderr_and_events(client, sandbox):
    r = client.exec(sandbox["id"], cmd=["sh", "-c", "echo out; echo err >&2"])
    assert r.status == 200, r
    assert r.stdout == "out\n" and r.stderr == "err\n", r
    kinds = [ev["type"] for _, ev in r.events]
    assert kinds[0] == "start" and kinds[-1] == "exit", kinds
    assert isinstance(r.start["pid"], int) and r.start["pid"] > 0
    ex = r.exit
    assert ex["pid"] == r.start["pid"]
    assert ex["exit_code"] == 0 and ex["signal"] == 0
    assert ex["timed_out"] is False and ex["oom_killed"] is False
    assert isinstance(ex["duration_ms"], (int, float)) and ex["duration_ms"] >= 0


def test_per_stream_order(client, sandbox):
    r = client.exec(sandbox["id"], shell='i=1; while [ $i -le 1000 ]; do echo "o$i"; echo "e$i" >&2; i=$((i+1)); done')
    assert r.exit_code == 0, r
    assert r.stdout.splitlines() == [f"o{i}" for i in range(1, 1001)]
    assert r.stderr.splitlines() == [f"e{i}" for i in range(1, 1001)]


def test_large_output(client, sandbox):
    # 4 MiB through the stream, byte-exact
    r = client.exec(sandbox["id"], shell="head -c 4194304 /dev/zero | tr '\\0' 'a'")
    assert r.exit_code == 0, r
    assert r.stdout_bytes == b"a" * 4194304


@pytest.mark.parametrize("script,code", [("true", 0), ("exit 3", 3), ("no-such-command-sandpit", 127)])
def test_exit_codes(client, sandbox, script, code):
    r = client.exec(sandbox["id"], shell=script)
    assert r.exit_code == code, r
    assert r.exit["signal"] == 0


def test_killed_by_signal(client, sandbox):
    r = client.exec(sandbox["id"], shell="kill -9 $$")
    assert r.exit is not None, r
    assert r.exit["exit_code"] == -1 and r.exit["signal"] == 9, r.exit
    assert r.exit["timed_out"] is False and r.exit["oom_killed"] is False


def test_env_merged(client, make_sandbox):
    sid = make_sandbox(env={"A": "sb", "B": "sb"})["id"]
    out = client.sh(sid, 'echo "$A $B $C"', env={"B": "ex", "C": "ex"})
    assert out == "sb ex ex\n"
    # the exec's env does not stick
    assert client.sh(sid, 'echo "$A $B ${C:-unset}"') == "sb sb unset\n"


def test_cwd(client, sandbox):
    sid = sandbox["id"]
    assert client.sh(sid, "pwd", cwd="/tmp") == "/tmp\n"
    assert client.sh(sid, "pwd") == "/home/user\n"
    assert client.sh(sid, "pwd", user="root") == "/root\n"


def test_bad_cwd_is_400(client, sandbox):
    r = client.exec(sandbox["id"], cmd=["true"], cwd="/no/such/dir")
    assert r.status == 400, r
    assert r.error.get("code") == 400 and r.error.get("message"), r.error


def test_default_user(client, sandbox):
    out = client.sh(sandbox["id"], 'echo "$(id -u) $(id -g) $HOME $(id -un)"')
    assert out == "1000 1000 /home/user user\n"


def test_root_user(client, sandbox):
    out = client.sh(sandbox["id"], 'echo "$(id -u) $HOME"', user="root")
    assert out == "0 /root\n"


def test_user_by_uid_and_unknown_user(client, sandbox):
    sid = sandbox["id"]
    assert client.sh(sid, "id -u", user="65534") == "65534\n"
    assert client.sh(sid, "id -u", user="nobody") == "65534\n"
    r = client.exec(sid, cmd=["true"], user="no-such-user")
    assert r.status == 400, r


def test_sandbox_default_user_root(client, make_sandbox):
    sid = make_sandbox(user="root")["id"]
    assert client.sh(sid, "id -u") == "0\n"
    assert client.sh(sid, "id -u", user="user") == "1000\n"


def test_stdin_data(client, sandbox):
    r = client.exec(sandbox["id"], cmd=["cat"], stdin="hello\nworld")
    assert r.exit_code == 0 and r.stdout == "hello\nworld", r


def test_stdin_b64_binary(client, sandbox):
    data = bytes(range(256)) * 4
    r = client.exec(sandbox["id"], cmd=["cat"], stdin_b64=base64.b64encode(data).decode())
    assert r.exit_code == 0, r
    assert r.stdout_bytes == data


def test_stdin_open_foreground(client, sandbox):
    sid = sandbox["id"]
    s = client.stream("POST", exec_path(sid), {"cmd": ["cat"], "stdin_open": True}, timeout=60)
    assert not isinstance(s, Response), s
    with s:
        start = s.next_event()
        assert start["type"] == "start", start
        pid = start["pid"]
        r = client.post(f"/v1/sandboxes/{sid}/processes/{pid}/stdin", {"data": "first\n"})
        assert r.status == 204, r
        ev = s.next_event()
        assert ev["type"] == "stdout" and ev.get("data") == "first\n", ev
        r = client.post(f"/v1/sandboxes/{sid}/processes/{pid}/stdin",
                        {"data_b64": base64.b64encode(b"second\n").decode()})
        assert r.status == 204, r
        r = client.post(f"/v1/sandboxes/{sid}/processes/{pid}/stdin", {"eof": True})
        assert r.status == 204, r
        rest = [ev for ev in s]
    out = "".join(e.get("data", "") for e in rest if e["type"] == "stdout")
    assert out == "second\n", rest
    assert rest[-1]["type"] == "exit" and rest[-1]["exit_code"] == 0, rest


def test_stdin_open_background(client, sandbox):
    sid = sandbox["id"]
    r = client.post(exec_path(sid), {"shell": "tr a-z A-Z", "stdin_open": True, "background": True})
    assert r.status == 201, r
    pid = r.json()["pid"]
    assert client.post(f"/v1/sandboxes/{sid}/processes/{pid}/stdin", {"data": "abc\n", "eof": True}).status == 204
    res = client.reconnect(sid, pid)
    assert res.stdout == "ABC\n" and res.exit_code == 0, res


def test_stdin_after_eof_is_409(client, sandbox):
    """Stdin that was closed conflicts with the process's state: 409 with a
    JSON message (init's EPIPE used to answer 500), and the process runs on."""
    sid = sandbox["id"]
    r = client.post(exec_path(sid), {"cmd": ["sleep", "300"], "stdin_open": True, "background": True})
    assert r.status == 201, r
    pid = r.json()["pid"]
    stdin = f"/v1/sandboxes/{sid}/processes/{pid}/stdin"
    assert client.post(stdin, {"eof": True}).status == 204
    body = assert_error(client.post(stdin, {"data": "late\n"}), 409)
    assert "closed" in body["message"], body
    assert proc_entry(client, sid, pid)["running"], "the process should still run"


def test_command_timeout(client, sandbox):
    r = client.exec(sandbox["id"], shell="echo before; sleep 60; echo after", timeout=1)
    assert r.exit is not None, r
    assert r.exit["timed_out"] is True, r.exit
    assert r.exit["exit_code"] != 0
    assert r.stdout == "before\n"
    # fractional timeouts are accepted
    r = client.exec(sandbox["id"], cmd=["sleep", "30"], timeout=0.5)
    assert r.exit["timed_out"] is True, r.exit
    # a command that finishes in time is not marked
    r = client.exec(sandbox["id"], cmd=["true"], timeout=30)
    assert r.exit["timed_out"] is False


def test_command_timeout_kills_process_group(client, sandbox):
    sid = sandbox["id"]
    r = client.exec(sid, shell="sleep 7777 & sleep 7778; wait", timeout=1)
    assert r.exit["timed_out"] is True, r
    wait_for(lambda: "sleep 777" not in sleeps(client, sid), timeout=10,
             what="the timed-out process group is gone")


def test_streaming_delivers_before_exit(client, sandbox):
    """Each line waits for a file that the test creates only after it has seen
    the line before on the stream: output held back until the exit would never
    let the command get past its first line (it gives up after 30 s)."""
    sid = sandbox["id"]
    script = ("for i in 1 2 3; do echo line$i; n=0; while [ ! -e /tmp/go$i ] && [ $n -lt 600 ]; do "
              "sleep 0.05; n=$((n+1)); done; [ -e /tmp/go$i ] || { echo stuck; exit 3; }; done")
    s = client.stream("POST", exec_path(sid), {"shell": script}, timeout=60)
    assert not isinstance(s, Response), s
    seen, exits = "", []
    with s:
        for ev in s:
            if ev["type"] == "stdout":
                seen += ev["data"]
                n = seen.count("\n")
                if seen.endswith(f"line{n}\n") and n <= 3:
                    assert client.exec(sid, cmd=["touch", f"/tmp/go{n}"]).exit_code == 0
            elif ev["type"] == "exit":
                exits.append(ev)
    assert seen == "line1\nline2\nline3\n", s.events
    assert len(exits) == 1 and exits[0]["exit_code"] == 0, s.events


def test_binary_output_is_base64(client, sandbox):
    r = client.exec(sandbox["id"], shell=r"printf '\377\376\000\001abc\200'")
    assert r.exit_code == 0, r
    assert r.stdout_bytes == b"\xff\xfe\x00\x01abc\x80"
    assert any("data_b64" in ev for _, ev in r.events if ev["type"] == "stdout"), r.events
    for _, ev in r.events:
        if ev["type"] == "stdout":
            assert ("data" in ev) != ("data_b64" in ev), ev


def test_split_utf8_is_joined(client, sandbox):
    # the euro sign written in two pieces with a pause between them
    r = client.exec(sandbox["id"], shell=r"printf '\342'; sleep 0.3; printf '\202\254\n'")
    assert r.exit_code == 0, r
    assert r.stdout_bytes == "€\n".encode()
    evs = [ev for _, ev in r.events if ev["type"] == "stdout"]
    assert all("data" in ev and "data_b64" not in ev for ev in evs), f"split UTF-8 not joined: {evs}"


def test_missing_binary_is_400(client, sandbox):
    r = client.exec(sandbox["id"], cmd=["/no/such/binary"])
    assert r.status == 400, r
    assert r.error["code"] == 400 and r.error["message"], r.error
    r = client.exec(sandbox["id"], cmd=["no-such-binary-in-path"])
    assert r.status == 400, r


@pytest.mark.parametrize("body", [
    {},
    {"cmd": ["true"], "shell": "true"},
    {"cmd": []},
    {"cmd": "true"},
    {"shell": 1},
    {"cmd": ["true"], "bogus": 1},
    {"cmd": ["true"], "timeout": -1},
], ids=["neither", "both", "empty-argv", "cmd-string", "shell-int", "unknown-field", "negative-timeout"])
def test_bad_exec_is_400(client, sandbox, body):
    r = client.post(exec_path(sandbox["id"]), body)
    assert_error(r, 400)


def test_background_lifecycle(client, sandbox):
    sid = sandbox["id"]
    client.sh(sid, "mkfifo /tmp/gate")
    r = client.post(exec_path(sid), {"shell": "echo started; read x < /tmp/gate; echo done; exit 5",
                                     "background": True, "tag": "bg-job"})
    assert r.status == 201, r
    pid = r.json()["pid"]
    p = proc_entry(client, sid, pid)
    assert p["running"] is True and p["background"] is True and p["tag"] == "bg-job", p
    assert p["exit_code"] is None and p["signal"] is None, p
    assert isinstance(p["started_at"], str) and p["started_at"]
    assert p["cmd"] in (["/bin/sh", "-c", "echo started; read x < /tmp/gate; echo done; exit 5"],
                        ["sh", "-c", "echo started; read x < /tmp/gate; echo done; exit 5"]), p["cmd"]
    # live: reconnect, see buffered output, release the gate, see the rest and the exit
    s = client.stream("GET", f"/v1/sandboxes/{sid}/processes/{pid}/stream", timeout=30)
    assert not isinstance(s, Response), s
    with s:
        first = s.next_event()
        assert first["type"] == "stdout" and first.get("data") == "started\n", first
        # (bounded: opening the fifo blocks if the background reader is gone)
        client.sh(sid, "echo go > /tmp/gate", timeout=10)
        rest = list(s)
    assert "".join(e.get("data", "") for e in rest if e["type"] == "stdout") == "done\n"
    assert rest[-1]["type"] == "exit" and rest[-1]["exit_code"] == 5 and rest[-1]["pid"] == pid, rest
    # after exit: the list says so, and reconnecting replays output + exit
    p = proc_entry(client, sid, pid)
    assert p["running"] is False and p["exit_code"] == 5 and p["signal"] == 0, p
    again = client.reconnect(sid, pid)
    assert again.stdout == "started\ndone\n" and again.exit_code == 5, again
    assert again.start is None, "stream reconnect must not send a start event"


@pytest.mark.parametrize("sig,num", [("SIGTERM", 15), ("KILL", 9), (2, 2)])
def test_signal_background(client, sandbox, sig, num):
    sid = sandbox["id"]
    r = client.post(exec_path(sid), {"cmd": ["sleep", "300"], "background": True})
    assert r.status == 201, r
    pid = r.json()["pid"]
    r = client.post(f"/v1/sandboxes/{sid}/processes/{pid}/signal", {"signal": sig})
    assert r.status == 204, r
    p = wait_for(lambda: (lambda e: e if not e["running"] else None)(proc_entry(client, sid, pid)), timeout=15,
                 what="signalled process exited")
    assert p["exit_code"] == -1 and p["signal"] == num, p
    res = client.reconnect(sid, pid, http_timeout=30)
    assert res.exit is not None, res
    assert res.exit["exit_code"] == -1 and res.exit["signal"] == num, res.exit


def test_signal_reaches_process_group(client, sandbox):
    sid = sandbox["id"]
    r = client.post(exec_path(sid), {"shell": "sleep 6661 & sleep 6662 & wait", "background": True})
    pid = r.json()["pid"]
    wait_for(lambda: sleeps(client, sid).count("sleep 666") == 2, timeout=10, what="children started")
    assert client.post(f"/v1/sandboxes/{sid}/processes/{pid}/signal", {"signal": "TERM"}).status == 204
    client.reconnect(sid, pid, http_timeout=30)
    wait_for(lambda: "sleep 666" not in sleeps(client, sid), timeout=10,
             what="the whole process group got the signal")


def test_process_errors(client, sandbox):
    sid = sandbox["id"]
    assert_error(client.get(f"/v1/sandboxes/{sid}/processes/99999/stream"), 404)
    assert_error(client.post(f"/v1/sandboxes/{sid}/processes/99999/signal", {"signal": "TERM"}), 404)
    assert_error(client.post(f"/v1/sandboxes/{sid}/processes/99999/stdin", {"data": "x"}), 404)
    r = client.post(exec_path(sid), {"cmd": ["sleep", "300"], "background": True})
    pid = r.json()["pid"]
    assert_error(client.post(f"/v1/sandboxes/{sid}/processes/{pid}/signal", {"signal": "SIGNOPE"}), 400)
    assert_error(client.get("/v1/sandboxes/nosuchsandbox0000000/processes"), 404)


def test_client_disconnect_kills_foreground(client, sandbox):
    sid = sandbox["id"]
    s = client.stream("POST", exec_path(sid), {"cmd": ["sleep", "4321"]}, timeout=30)
    assert not isinstance(s, Response), s
    start = s.next_event()
    assert start["type"] == "start"
    assert "sleep 4321" in sleeps(client, sid)
    s.close()
    wait_for(lambda: "sleep 4321" not in sleeps(client, sid), timeout=15,
             what="foreground process killed after the client disconnected")


def test_client_disconnect_kills_chatty_foreground(client, sandbox):
    sid = sandbox["id"]
    s = client.stream("POST", exec_path(sid), {"shell": "while :; do echo tick-4322; sleep 0.1; done"}, timeout=30)
    assert not isinstance(s, Response), s
    s.next_event()
    s.next_event()
    s.close()
    wait_for(lambda: "tick-4322" not in client.sh(sid, "ps -eo args"), timeout=15,
             what="chatty foreground process killed after the client disconnected")


def test_exec_in_deleted_sandbox(client, sandbox):
    sid = sandbox["id"]
    assert client.delete(f"/v1/sandboxes/{sid}").status == 204
    r = client.exec(sid, cmd=["true"])
    assert r.status == 404, r
