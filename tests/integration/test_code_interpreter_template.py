"""The `code-interpreter` template (templates/code-interpreter/Dockerfile, built
FROM default by sandpit's own builder through mk/templates.sh) runs every
language of the code API with state across runs; `default` (and so
code-interpreter) carries git, curl and npm. Real agent, real runc
(docs/templates.md)."""

import json
import re

import pytest

from conftest import DEFAULT_TEMPLATES, need_default_template
from test_code import ok, run_code

# language: (code that sets x, a later run that reads it, its text or stdout)
STATE = {
    "python": ("x = 41", "x + 1", "42"),
    "javascript": ("var x = 41", "x + 1", "42"),
    "typescript": ("let x: number = 41", "x + 1", "42"),
    "r": ("x <- 41", "x + 1", "[1] 42"),
    "java": ("int x = 41;", "x + 1", "42"),
    "bash": ("X=41", "echo $((X + 1))", "42\n"),
}


def need_code_interpreter_template():
    if not (DEFAULT_TEMPLATES / "code-interpreter" / "template.json").is_file():
        pytest.skip(f"{DEFAULT_TEMPLATES}/code-interpreter is missing: build it with "
                    "`mk/templates.sh code-interpreter` (make test does)")


def test_languages_recorded():
    need_code_interpreter_template()
    t = json.loads((DEFAULT_TEMPLATES / "code-interpreter" / "template.json").read_text())
    assert sorted(t["languages"]) == sorted(STATE) and t["inputs"].startswith("sha256:"), t


def test_every_language_keeps_state(client, make_sandbox):
    """One sandbox (the JVM's and R's start are the slow part): each language
    sets a variable, then, after the other languages ran, reads it back."""
    need_code_interpreter_template()
    sid = make_sandbox(template="code-interpreter", memory="2Gi")["id"]
    for language, (set_code, _, _) in sorted(STATE.items()):
        ok(run_code(client, sid, set_code, language=language))
    for language, (_, get_code, want) in sorted(STATE.items()):
        r = ok(run_code(client, sid, get_code, language=language))
        got = r.stdout if language == "bash" else r.text
        assert got == want, (language, r)

    # What the Dockerfile added is there for the template's user, and what
    # the build left behind is not.
    out = client.sh(sid, "id -un; jshell --version >/dev/null && echo jshell; "
                    "Rscript -e 'cat(jsonlite::toJSON(list(a = 1)))'; echo; "
                    "test -e /var/cache/sandpit-debs || echo no-debs")
    assert out == "user\njshell\n{\"a\":[1]}\nno-debs\n", out


@pytest.fixture(params=["default", "code-interpreter"])
def tools_sb(request, make_sandbox):
    need_default_template()
    if request.param == "code-interpreter":
        need_code_interpreter_template()
    return make_sandbox(template=request.param, memory="1Gi")["id"]


def test_git_clone_and_commit(client, tools_sb):
    out = client.sh(tools_sb, """set -e
        cd /tmp && git init -q -b main src && cd src
        echo hi >f && git add f
        git -c user.name=u -c user.email=u@example.invalid commit -q -m first
        git clone -q /tmp/src /tmp/dst && cd /tmp/dst
        git log --format=%s && git branch --show-current && cat f""")
    assert out == "first\nmain\nhi\n", out


def test_curl_of_a_loopback_url(client, tools_sb):
    # A server in the sandbox's own loopback; curl retries until it listens.
    out = client.sh(tools_sb, """set -e
        mkdir -p /tmp/www && echo served >/tmp/www/f
        python3 -m http.server 18080 --bind 127.0.0.1 -d /tmp/www >/dev/null 2>&1 &
        curl -sS --retry 50 --retry-connrefused --retry-delay 0 --max-time 60 http://127.0.0.1:18080/f
        kill $!""")
    assert out == "served\n", out


def test_npm_and_pip(client, tools_sb):
    out = client.sh(tools_sb, "npm --version; pip --version")
    lines = out.splitlines()
    assert len(lines) == 2 and re.fullmatch(r"\d+\.\d+\.\d+", lines[0]), out
    assert lines[1].startswith("pip "), out
