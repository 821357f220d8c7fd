"""The kernels' secret maskers (node-agent/kernels/sandpit_mask.{py,js}) against a
straight port of sandpit-init's (node-agent/init/mask.c): the same output for every
chunking of random text over a small alphabet, with overlapping values and values
that are prefixes of others (docs/code-interpreter.md, "Secrets")."""

import importlib.util
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[2] / "node-agent" / "kernels"


def load_py_masker():
    spec = importlib.util.spec_from_file_location("sandpit_mask", KERNELS / "sandpit_mask.py")
    mod = importlib.util.module_from_spec(spec)
    old, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = old
    return mod


def reference(values, chunks):
    """mask.c's mask_feed, character by character."""
    vals = [v for v in values if v]
    held, outs = "", []
    for text, final in chunks:
        buf, i, out = held + text, 0, []
        while i < len(buf):
            best, rem, partial = 0, len(buf) - i, False
            for v in vals:
                if len(v) <= rem:
                    if len(v) > best and buf[i:i + len(v)] == v:
                        best = len(v)
                elif not final and v.startswith(buf[i:]):
                    partial = True
            if partial:
                break
            if best:
                out.append("***")
                i += best
            else:
                out.append(buf[i])
                i += 1
        held = buf[i:]
        outs.append("".join(out))
    return outs


def cases(n, seed):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        values = ["".join(rnd.choice("ab.") for _ in range(rnd.randint(1, 4)))
                  for _ in range(rnd.randint(1, 3))]
        text = "".join(rnd.choice("ab.c") for _ in range(rnd.randint(0, 14)))
        cuts = sorted(rnd.sample(range(len(text) + 1), min(len(text) + 1, rnd.randint(0, 4))))
        chunks, p = [], 0
        for c in cuts:
            chunks.append([text[p:c], False])
            p = c
        chunks += [[text[p:], False], ["", True]]
        out.append([values, chunks, reference(values, chunks)])
    return out


def test_python_masker_matches_init():
    m = load_py_masker()
    for values, chunks, want in cases(5000, 1):
        s = m.Stream(m.Values(values))
        got = [s.feed(t, f) for t, f in chunks]
        assert got == want, (values, chunks)
        # whole strings: the same as one final chunk
        whole = "".join(t for t, _ in chunks)
        assert m.Values(values).mask(whole) == reference(values, [[whole, True]])[0]
    v = m.Values(["sec", "secret"])
    assert v.mask_obj({"secret": ["x sec", 1], "png": "secret"}) == {"***": ["x ***", 1], "png": "secret"}


def test_javascript_masker_matches_init(tmp_path):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed on the host")
    data = tmp_path / "cases.json"
    data.write_text(json.dumps(cases(5000, 2)))
    script = f"""
const {{ Values, Stream }} = require({json.dumps(str(KERNELS / 'sandpit_mask.js'))});
const cases = require({json.dumps(str(data))});
let bad = 0;
for (const [values, chunks, want] of cases) {{
  const s = new Stream(new Values(values));
  const got = chunks.map(([t, f]) => s.feed(t, f));
  if (JSON.stringify(got) !== JSON.stringify(want)) {{ bad++; console.log(JSON.stringify([values, chunks, got])); }}
}}
const o = new Values(['sec', 'secret']).maskObj({{ secret: ['x sec', 1], png: 'secret' }});
if (JSON.stringify(o) !== JSON.stringify({{ '***': ['x ***', 1], png: 'secret' }})) bad++;
console.log('bad', bad);
"""
    r = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("bad 0"), r.stdout[-2000:]
