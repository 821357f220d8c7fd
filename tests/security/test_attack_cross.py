"""Attacks from one sandbox (A) on another (B) on the same node: B's files,
processes, loopback services, abstract unix sockets, System V and POSIX shared
memory and signals, from A as `user` and as root, and through the agent's own
files API. Each sandbox has its own mount, pid, network, ipc and uts
namespaces and its own tmpfs (docs/security.md, "Attack classes")."""

import pytest

from conftest import rand_suffix, wait_for

USERS = ["user", "root"]


def run(client, sid, script, user="root", timeout=60):
    r = client.exec(sid, shell=script, user=user, timeout=timeout, http_timeout=timeout + 30)
    assert r.status == 200 and r.exit is not None, r
    return r


def background(client, sid, cmd, user="user"):
    r = client.post(f"/v1/sandboxes/{sid}/exec", {"cmd": cmd, "background": True, "user": user})
    assert r.status == 201, r


@pytest.fixture
def pair(client, make_sandbox):
    a = make_sandbox()["id"]
    b = make_sandbox()["id"]
    return a, b


@pytest.mark.parametrize("user", USERS)
def test_a_cannot_find_bs_files(client, agent, pair, user):
    """A searches every path it has, /proc/*/root and /proc/*/cwd included,
    for a file B wrote in its /tmp and home: none is found."""
    a, b = pair
    mark = "cross-" + rand_suffix()
    run(client, b, f"echo {mark} > /tmp/{mark}; echo {mark} > /home/user/{mark}", user="user")
    assert run(client, b, f"cat /tmp/{mark}").stdout == f"{mark}\n"  # positive control
    r = run(client, a, f"find / /proc/[0-9]*/root/ /proc/[0-9]*/cwd/ -xdev -name '{mark}*' 2>/dev/null; "
                       f"ls /proc/*/root/tmp 2>/dev/null | grep -c {mark}; exit 0", user=user, timeout=120)
    assert mark not in r.stdout.replace(f"grep -c {mark}", ""), r.stdout[-500:]
    assert r.stdout.strip().splitlines()[-1] == "0", r.stdout[-500:]


@pytest.mark.parametrize("user", USERS)
def test_a_cannot_see_or_signal_bs_processes(client, agent, pair, user):
    """A lists processes and signals B's background process by its host pid
    and by the pid it has inside B: B's process lives on."""
    a, b = pair
    background(client, b, ["sleep", "4711"])
    host_pid = wait_for(lambda: [p for p, what in agent.sandbox_procs(zombies=False).items() if "sleep 4711" in what],
                        timeout=20, what="B's sleep on the host")[0]
    inner = client.sh(b, "pgrep -x sleep").split()[0]
    r = run(client, a, f"ps -eo pid,args; kill -9 {host_pid} {inner}; echo rc=$?", user=user)
    assert "sleep 4711" not in r.stdout, r.stdout
    assert "sleep 4711" in client.sh(b, "ps -eo args"), "B's process was killed from A"
    assert client.sandbox(b).json()["state"] == "running"


@pytest.mark.parametrize("user", USERS)
def test_a_cannot_reach_bs_loopback_service(client, pair, user):
    """B serves TCP on 127.0.0.1; A connects to the same port: refused (each
    sandbox has its own network namespace and loopback)."""
    a, b = pair
    port = 9471
    background(client, b, ["python3", "-c",
                           "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                           f"s.bind(('127.0.0.1', {port})); s.listen(4)\n"
                           "while True:\n    c, _ = s.accept(); c.sendall(b'B-SERVICE'); c.close()\n"])
    probe = (f"import socket\ntry:\n    print(socket.create_connection(('127.0.0.1', {port}), timeout=2).recv(20))\n"
             "except OSError as e:\n    print('refused', e.errno)\n")
    wait_for(lambda: "B-SERVICE" in client.exec(b, cmd=["python3", "-c", probe]).stdout, timeout=30,
             interval=0.2, what="B's service")
    r = client.exec(a, cmd=["python3", "-c", probe], user=user)
    assert "refused" in r.stdout and "B-SERVICE" not in r.stdout, r


def test_a_cannot_attach_to_bs_posix_mqueue_or_sysv_objects(client, pair):
    """B creates a POSIX message queue, a System V message queue and a
    semaphore set; A, as root, opens them by name or key: none exists."""
    a, b = pair
    make = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.msgget(0x5a5b, 0o1666), libc.semget(0x5a5c, 1, 0o1666))\n"
            "fd = os.open('/dev/mqueue/cross-q', os.O_CREAT | os.O_RDWR, 0o666)\nprint('mq', fd >= 0)\n")
    r = client.exec(b, cmd=["python3", "-c", make], user="root")
    assert r.exit_code == 0 and "-1" not in r.stdout.split()[:2], r
    look = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.msgget(0x5a5b, 0), libc.semget(0x5a5c, 1, 0), os.path.exists('/dev/mqueue/cross-q'))\n")
    assert client.exec(b, cmd=["python3", "-c", look], user="root").stdout.split()[2] == "True"
    out = client.exec(a, cmd=["python3", "-c", look], user="root").stdout.split()
    assert out == ["-1", "-1", "False"], out


def test_files_api_of_a_cannot_reach_b(client, agent, pair):
    """Through A's files API, paths that lead to B on the host (B's init's
    /proc/PID/root, the state dir's entry for B) find nothing of B's."""
    a, b = pair
    mark = "api-" + rand_suffix()
    client.sh(b, f"echo {mark} > /tmp/m")
    pid = agent.runc_init_pid(b)
    for path in (f"/proc/{pid}/root/tmp/m", f"{agent.state_dir}/sandboxes/{b}/rootfs/tmp/m",
                 f"/../../../../proc/{pid}/root/tmp/m"):
        r = client.get(f"/v1/sandboxes/{a}/files?path={path}")
        assert mark.encode() not in r.body, (path, r)
        assert r.status in (400, 403, 404), (path, r)

