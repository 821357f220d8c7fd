"""Issue 16, hole 6: agent memory from a result.

One run_code whose value was a 60 MiB string grew the agent by about 220 MiB
(its line buffer doubled to 64 MiB, the line was parsed and re-encoded); four
at once, 500 MiB; none of it charged to the sandbox. Now an event line is at
most 1 MiB: the kernels cut a bigger result or error (a marker in the text,
"truncated": true) and split long output into several events, and the agent
drops a longer line that user code writes to the kernel's socket itself, so
its own memory stays bounded whatever the sandbox sends.
docs/code-interpreter.md, "Limits"; docs/security.md, "Code results"."""

import threading

import pytest

from conftest import Peak, Response

EVENT_MAX = 1 << 20
BIG = 60 << 20
HWM_BOUND_KB = 32 << 10  # a memory bound for the agent's growth, not a timing one


def run(client, sid, code, **kw):
    """The events of one run, read as they stream, with the raw line sizes."""
    s = client.stream("POST", f"/v1/sandboxes/{sid}/code", dict(kw, code=code), timeout=300)
    assert not isinstance(s, Response), s
    with s:
        s.read_all()
    events = [ev for _, ev in s.events]
    assert events and events[-1]["type"] == "end_of_execution", events[-5:]
    return events


def main_result(events):
    res = [ev for ev in events if ev["type"] == "result" and ev.get("is_main_result")]
    assert len(res) == 1, [ev["type"] for ev in events]
    return res[0]


def assert_cut(ev, total):
    assert ev.get("truncated") is True, {k: (v if len(str(v)) < 200 else "...") for k, v in ev.items()}
    text = ev["text"]
    assert len(text.encode()) < EVENT_MAX
    assert "[sandpit: truncated:" in text and f"of {total} characters shown" in text, text[-300:]


@pytest.fixture
def sb(make_sandbox):
    # the host template (the host's python3 and node); room for a few 60 MiB
    # strings and their copies in each kernel
    return make_sandbox(template="host", memory="3Gi")["id"]


def test_huge_python_result_is_cut(agent, client, sb):
    run(client, sb, "1")  # the kernel is started before the measurement
    with Peak(agent.proc.pid) as p:
        events = run(client, sb, f"'x' * {BIG}")
    ev = main_result(events)
    assert_cut(ev, BIG + 2)  # repr's quotes
    assert ev["text"].startswith("'xxxx")
    assert p.grew_kb < HWM_BOUND_KB, f"the agent's peak RSS grew by {p.grew_kb} kB"
    # the context lives on, and small results are untouched
    ev = main_result(run(client, sb, "len(_)"))
    assert ev["text"] == str(BIG) and "truncated" not in ev


def test_four_huge_results_at_once(agent, client, sb):
    ctxs = []
    for _ in range(4):
        r = client.post(f"/v1/sandboxes/{sb}/contexts", {"language": "python"}, timeout=120)
        assert r.status == 201, r
        ctxs.append(r.json()["id"])
    out, errors = {}, []

    def one(ctx):
        try:
            out[ctx] = run(client, sb, f"'y' * {BIG}", context=ctx)
        except Exception as e:  # reported below
            errors.append(e)

    with Peak(agent.proc.pid) as p:
        threads = [threading.Thread(target=one, args=(c,)) for c in ctxs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    assert not errors, errors
    assert sorted(out) == sorted(ctxs)
    for events in out.values():
        assert_cut(main_result(events), BIG + 2)
    assert p.grew_kb < HWM_BOUND_KB, f"the agent's peak RSS grew by {p.grew_kb} kB"


def test_huge_error_is_cut(agent, client, sb):
    with Peak(agent.proc.pid) as p:
        events = run(client, sb, f"raise ValueError('e' * {BIG})")
    err = [ev for ev in events if ev["type"] == "error"]
    assert len(err) == 1 and err[0]["name"] == "ValueError", events
    assert err[0].get("truncated") is True
    assert "[sandpit: truncated:" in err[0]["value"]
    assert len(err[0]["value"].encode()) + len(err[0]["traceback"].encode()) < EVENT_MAX
    assert p.grew_kb < HWM_BOUND_KB, p.grew_kb


def test_long_output_is_split_not_cut(client, sb):
    """Output is not cut: it arrives whole, in events of at most 1 MiB."""
    n = 5 << 20
    events = run(client, sb, f"import sys; sys.stdout.write('z' * {n}); sys.stdout.flush()")
    out = [ev for ev in events if ev["type"] == "stdout"]
    assert "".join(ev["text"] for ev in out) == "z" * n
    assert len(out) > 1


def test_huge_javascript_result_is_cut(agent, client, sb):
    """node's inspect() shortens a long string's text itself; the result's
    json field holds the whole value, and is dropped."""
    run(client, sb, "1", language="javascript")
    with Peak(agent.proc.pid) as p:
        events = run(client, sb, f"({{big: 'x'.repeat({BIG})}})", language="javascript")
    ev = main_result(events)
    assert ev.get("truncated") is True and "json" not in ev, list(ev)
    assert "big: 'xxx" in ev["text"] and len(ev["text"]) < EVENT_MAX
    assert p.grew_kb < HWM_BOUND_KB, p.grew_kb
    # one console.log of 3 MiB arrives whole, split into events
    n = 3 << 20
    events = run(client, sb, f"console.log('w'.repeat({n}))", language="javascript")
    out = [ev for ev in events if ev["type"] == "stdout"]
    assert "".join(ev["text"] for ev in out) == "w" * n + "\n" and len(out) > 1


def test_huge_bash_output_is_split(client, sb):
    n = 3 << 20
    events = run(client, sb, f"head -c {n} /dev/zero | tr '\\0' q", language="bash")
    out = [ev for ev in events if ev["type"] == "stdout"]
    assert "".join(ev["text"] for ev in out) == "q" * n


# User code owns the kernel process: it can write to the kernel's socket
# itself, past the driver's limit. The agent must stay bounded anyway.
HOSTILE = """
import gc, socket
s = next(o for o in gc.get_objects() if isinstance(o, socket.socket) and o.family == socket.AF_UNIX)
s.sendall(b'{"type": "result", "is_main_result": false, "text": "' + b'h' * %d + b'"}\\n')
s.sendall(b'h' * %d)  # a line that never ends within the limit ...
s.sendall(b'\\n')    # ... until here
'after'
"""


def test_hostile_kernel_line_is_dropped(agent, client, sb):
    run(client, sb, "1")
    with Peak(agent.proc.pid) as p:
        events = run(client, sb, HOSTILE % (10 << 20, 200 << 20))
    dropped = [ev for ev in events if ev["type"] == "error" and ev.get("name") == "EventTooLarge"]
    assert len(dropped) == 2, [(ev["type"], ev.get("name")) for ev in events]
    assert "dropped" in dropped[0]["value"]
    assert not [ev for ev in events if ev["type"] == "result" and not ev.get("is_main_result")]
    assert main_result(events)["text"] == "'after'"
    assert p.grew_kb < HWM_BOUND_KB, f"the agent's peak RSS grew by {p.grew_kb} kB"
    # the context still works
    assert main_result(run(client, sb, "6 * 7"))["text"] == "42"
