"""Issue 16, hole 3: unauthenticated memory.

A client without the token sends a 300 MiB PUT .../files?max_bytes=... to an
agent on TCP. The token is checked as soon as the headers are in: the 401
arrives while the body is still being sent (the agent reads none of it), no
memory file holds any of it, and the agent's peak RSS does not grow with it.
docs/security.md, "Unauthenticated request bodies"."""

import os
import select
import socket
import time

import pytest

from conftest import Client, Peak, start_tcp_agent, stop_agent

BODY = 300 << 20
CHUNK = 1 << 20
# The kernel's socket buffers on both sides can take a few MiB before the
# agent reads anything; an agent that reads the body takes all 300 MiB.
SENT_BOUND = 64 << 20
RSS_BOUND_KB = 32 << 10


@pytest.fixture(scope="module")
def tcp_agent(templates_dir, tmp_path_factory):
    a = start_tcp_agent("sechttp-body", templates_dir, tmp_path_factory)
    yield a
    stop_agent(a)


def body_files(pid):
    """(count, total bytes) of the agent's spooled-body memory files."""
    n = size = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("/memfd:sandpit-body"):
                n += 1
                size += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            pass
    return n, size


def send_body(port, path, headers, total, chunked, pid):
    """Sends the request head, then up to total body bytes from a generator
    while watching for an answer. Returns (answer bytes, body bytes sent, the
    most memory-file bytes seen in the agent meanwhile)."""

    def pieces():
        block = b"\0" * CHUNK
        left = total
        while left > 0:
            n = min(CHUNK, left)
            left -= n
            yield (b"%x\r\n" % n + block[:n] + b"\r\n") if chunked else block[:n]
        if chunked:
            yield b"0\r\n\r\n"

    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        head = f"PUT {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/octet-stream\r\n"
        head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        s.sendall(head.encode() + b"\r\n")
        s.setblocking(False)
        answer, sent, spooled = b"", 0, 0
        gen = pieces()
        pending = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            spooled = max(spooled, body_files(pid)[1])
            if not pending:
                pending = next(gen, b"")
            r, w, _ = select.select([s], [s] if pending else [], [], 1.0)
            if r:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                if b"\r\n\r\n" in answer:
                    break
            if w and pending:
                try:
                    n = s.send(pending)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    # The agent closed after answering: the answer is still
                    # readable from the socket.
                    pending = b""
                    s.setblocking(True)
                    s.settimeout(10)
                    try:
                        answer += s.recv(65536)
                    except OSError:
                        pass
                    break
                sent += n
                pending = pending[n:]
        return answer, sent, spooled
    finally:
        s.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_no_token_upload_is_refused_before_the_body(tcp_agent, chunked):
    pid = tcp_agent.proc.pid
    files_before = body_files(pid)[0]
    path = f"/v1/sandboxes/{'a' * 12}/files?path=/tmp/big&max_bytes={64 << 30}"
    with Peak(pid) as p:
        answer, sent, spooled = send_body(tcp_agent.port, path, {}, BODY, chunked, pid)
    assert answer.startswith(b"HTTP/1.1 401"), (answer[:200], sent)
    assert b"bearer token" in answer, answer
    assert sent < SENT_BOUND, f"the agent read {sent} body bytes before its 401"
    assert spooled == 0, f"the agent spooled {spooled} bytes of an unauthenticated body"
    assert body_files(pid)[0] == files_before
    assert p.grew_kb < RSS_BOUND_KB, f"the agent's peak RSS grew by {p.grew_kb} kB"
    # and it still serves the token's holder
    r = Client(tcp=("127.0.0.1", tcp_agent.port), token=tcp_agent.token).get("/v1/sandboxes")
    assert r.status == 200, r


def test_wrong_token_upload_is_refused_before_the_body(tcp_agent):
    pid = tcp_agent.proc.pid
    path = f"/v1/sandboxes/{'a' * 12}/files?path=/tmp/big"
    answer, sent, spooled = send_body(tcp_agent.port, path, {"Authorization": "Bearer " + "x" * 48},
                                      BODY, False, pid)
    assert answer.startswith(b"HTTP/1.1 401"), (answer[:200], sent)
    assert sent < SENT_BOUND and spooled == 0, (sent, spooled)


def test_declared_oversize_body_is_kept_nowhere(tcp_agent):
    """With the token, a Content-Length over the route's limit (max_bytes
    here, the 16 MiB JSON cap elsewhere): the body is read and discarded, none
    of it spooled or buffered, then 413."""
    pid = tcp_agent.proc.pid
    auth = {"Authorization": "Bearer " + tcp_agent.token}
    total = 64 << 20
    for path in (f"/v1/sandboxes/{'a' * 12}/files?path=/tmp/big&max_bytes={1 << 20}", "/v1/sandboxes"):
        with Peak(pid) as p:
            answer, sent, spooled = send_body(tcp_agent.port, path, auth, total, False, pid)
        assert answer.startswith(b"HTTP/1.1 413"), (path, answer[:200], sent)
        assert b"larger than" in answer, answer
        assert spooled == 0, (path, spooled)
        assert p.grew_kb < RSS_BOUND_KB, (path, p.grew_kb)
