"""Code interpreter: the TypeScript, R and Java kernels (typescript.js,
r_kernel.R and JavaKernel.java through bridge.py; docs/code-interpreter.md)
in sandboxes of the `host` template, which has the host's node-typescript,
R and JDK (mk/deps.sh)."""

import base64
import json
import os
import shutil

import pytest

from conftest import DEFAULT_ROOTFS, DEFAULT_TEMPLATES, Response, assert_error, need_default_template, wait_for
from test_code import Run, ctx_path, ok, open_run, png_decode, run_code

SECRET = "kern-s3cret-Hq4Rt8"
SECRET2 = "run-s3cret-Zp2Lw5"


class Lang:
    def __init__(self, name, alias, need, **code):
        self.name, self.alias, self.need = name, alias, need
        self.__dict__.update(code)


LANGS = {
    "typescript": Lang(
        "typescript", "ts", "/usr/share/nodejs/typescript/lib/typescript.js",
        set="let x: number = 41; x + 1", set_text="42", get_text="41",
        output='console.log("a"); console.error("b"); console.log("c"); 7', output_text="7",
        error='function f(): never { throw new TypeError("boom") }\nf()',
        error_name="TypeError", error_frame="at f ",
        bad="let = = ;", bad_name="SyntaxError", bad_detail="TS1109",
        env="process.env.FOO", env_text="'bar'", env_unset="process.env.FOO === undefined",
        env_unset_text="true",
        secret='console.log(process.env.TOKEN); console.log(process.env.RUNSEC); process.env.TOKEN',
        secret_text="'***'",
        wait=('console.log("first");\n'
              'const __go = () => require("fs").existsSync("/tmp/go");\n'
              'for (let i = 0; i < 600 && !__go(); i++)\n'
              '  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);\n'
              'console.log(__go() ? "saw the file" : "no file");'),
        forever="while (true) {}", exit="process.exit(3)"),
    "r": Lang(
        "r", "r", "/usr/bin/Rscript",
        set="x <- 41; x + 1", set_text="[1] 42", get_text="[1] 41",
        output='cat("a\\n"); message("b"); cat("c\\n"); 7', output_text="[1] 7",
        error='f <- function() stop("boom")\nf()',
        error_name="simpleError", error_frame="f()",
        bad="x <- (", bad_name="SyntaxError", bad_detail="unexpected",
        env='Sys.getenv("FOO")', env_text='[1] "bar"', env_unset='Sys.getenv("FOO", NA)',
        env_unset_text="[1] NA",
        secret='cat(Sys.getenv("TOKEN"), "\\n", sep = ""); cat(Sys.getenv("RUNSEC"), "\\n", sep = ""); '
               'Sys.getenv("TOKEN")',
        secret_text='[1] "***"',
        wait=('cat("first\\n")\n'
              'for (i in 1:600) { if (file.exists("/tmp/go")) break; Sys.sleep(0.05) }\n'
              'cat(if (file.exists("/tmp/go")) "saw the file\\n" else "no file\\n")'),
        forever="repeat {}", exit="quit(status = 3)"),
    "java": Lang(
        "java", "java", "/usr/lib/jvm/default-java/jmods/jdk.jshell.jmod",
        set="int x = 41;\nx + 1", set_text="42", get_text="41",
        output='System.out.println("a"); System.err.println("b"); System.out.println("c"); 7',
        output_text="7",
        error='void f() { throw new IllegalStateException("boom"); }\nf();',
        error_name="IllegalStateException", error_frame="at f(",
        bad='int y = "s";', bad_name="CompilationError", bad_detail="incompatible types",
        env='System.getenv("FOO")', env_text='"bar"', env_unset='System.getenv("FOO") == null',
        env_unset_text="true",
        secret='System.out.println(System.getenv("TOKEN")); System.out.println(System.getenv("RUNSEC")); '
               'System.getenv("TOKEN")',
        secret_text='"***"',
        wait=('System.out.println("first");\n'
              'for (int i = 0; i < 600 && !new java.io.File("/tmp/go").exists(); i++) Thread.sleep(50);\n'
              'System.out.println(new java.io.File("/tmp/go").exists() ? "saw the file" : "no file");'),
        forever="while (true) {}", exit="System.exit(3);"),
}


@pytest.fixture(params=sorted(LANGS))
def lang(request):
    lg = LANGS[request.param]
    if not os.path.exists(lg.need):
        pytest.skip(f"{lg.need} is missing: mk/deps.sh installs it")
    return lg


def test_language_kernel(client, make_sandbox, lang):
    """Value, state per context, output, errors, env and secrets: one
    sandbox per language, as a kernel's start is the slow part."""
    sid = make_sandbox(memory="1Gi", secret_env={"TOKEN": SECRET})["id"]
    # The alias the E2B SDK sends reaches the same default context.
    r = ok(run_code(client, sid, lang.set, language=lang.alias))
    assert r.text == lang.set_text and r.count == 1, r
    r = ok(run_code(client, sid, "x", language=lang.name))
    assert r.text == lang.get_text and r.count == 2, r

    # Another context has its own state.
    c = client.post(ctx_path(sid), {"language": lang.alias})
    assert c.status == 201 and c.json()["language"] == lang.name, c
    other = c.json()["id"]
    r = run_code(client, sid, "x", context=other)
    assert r.status == 200 and r.err is not None, r
    r = ok(run_code(client, sid, "x", language=lang.name))
    assert r.text == lang.get_text, r

    # stdout and stderr, then the value.
    r = ok(run_code(client, sid, lang.output, language=lang.name))
    assert r.stdout == "a\nc\n" and r.stderr == "b\n" and r.text == lang.output_text, r
    last_output = max(i for i, t in enumerate(r.types) if t in ("stdout", "stderr"))
    assert last_output < r.types.index("result") < r.types.index("end_of_execution"), r

    # A runtime error: name, value, the user's frames; the state survives.
    r = run_code(client, sid, lang.error, language=lang.name)
    assert r.status == 200 and r.err is not None, r
    assert r.err["name"] == lang.error_name and r.err["value"] == "boom", r.err
    assert lang.error_frame in r.err["traceback"], r.err
    assert "bridge.py" not in r.err["traceback"] and "JavaKernel" not in r.err["traceback"], r.err
    r = run_code(client, sid, lang.bad, language=lang.name)
    assert r.err and r.err["name"] == lang.bad_name and lang.bad_detail in r.err["traceback"], r
    assert ok(run_code(client, sid, "x", language=lang.name)).text == lang.get_text

    # A run's env is seen by that run only.
    assert ok(run_code(client, sid, lang.env, language=lang.name, env={"FOO": "bar"})).text == lang.env_text
    assert ok(run_code(client, sid, lang.env_unset, language=lang.name)).text == lang.env_unset_text

    # The sandbox's secret and a run's own are masked in output and results.
    r = ok(run_code(client, sid, lang.secret, language=lang.name, secret_env={"RUNSEC": SECRET2}))
    assert r.stdout == "***\n***\n" and r.text == lang.secret_text, r
    for _, ev in r.events:
        assert SECRET not in str(ev) and SECRET2 not in str(ev), ev


def test_language_streams_and_interrupts(client, make_sandbox, lang):
    """Output arrives while the run goes on (the run waits for a file the
    test creates only once it has seen the first line); a timeout interrupts
    a busy loop and the context keeps its state."""
    sid = make_sandbox(memory="1Gi")["id"]
    ok(run_code(client, sid, lang.set, language=lang.name))
    s = open_run(client, sid, lang.wait, language=lang.name)
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
    assert r.stdout == "first\nsaw the file\n" and r.err is None, r

    t = run_code(client, sid, lang.forever, language=lang.name, timeout=1)
    assert t.end["timed_out"] is True and t.err and t.err["name"] == "TimeoutError", t
    assert ok(run_code(client, sid, "x", language=lang.name)).text == lang.get_text


def test_language_exit_kills_the_context(client, make_sandbox, lang):
    """The interpreter exiting is the context's death, as for Python."""
    sid = make_sandbox(memory="1Gi")["id"]
    ok(run_code(client, sid, lang.set, language=lang.name))
    r = run_code(client, sid, lang.exit, language=lang.name)
    assert r.status == 200 and r.err and r.err["name"] == "ContextDied", r
    assert "status 3" in r.err["value"], r.err

    def state():
        return {c["id"]: c for c in client.get(ctx_path(sid)).json()["contexts"]}[lang.name]["state"]
    wait_for(lambda: state() == "dead", 10, what="the context is dead")
    assert run_code(client, sid, "1", language=lang.name).status == 409
    assert client.post(ctx_path(sid, lang.name) + "/restart").status == 200
    assert run_code(client, sid, "x", language=lang.name).err is not None  # a fresh kernel


def test_unknown_language_lists_the_languages(client, sandbox):
    body = assert_error(client.post(f"/v1/sandboxes/{sandbox['id']}/code", {"code": "1", "language": "cobol"}), 400)
    for name in ("python", "javascript", "typescript", "r", "java", "bash"):
        assert name in body["message"], body


# Rich results: per language, runs in one sandbox, each (code, check of the Run).

def r_plots(r):
    """Every page drawn is a PNG after the main result, in the order drawn."""
    assert [(ev["is_main_result"], "png" in ev) for ev in r.results] == [(True, False)] + [(False, True)] * 3, r
    assert r.main["text"] == '[1] "done"', r
    for ev in r.results[1:]:
        assert ev["text"] == "<plot 672x480>", ev["text"]
        assert png_decode(base64.b64decode(ev["png"])) == (672, 480)


def no_results(r):
    assert ok(r).results == [], r  # the last run's plots are not sent again


def r_error_after_plot(r):
    assert r.err and r.err["name"] == "simpleError" and r.err["value"] == "boom", r
    assert [png_decode(base64.b64decode(ev["png"])) for ev in r.results] == [(672, 480)], r


def r_main_data_frame(r):
    assert ok(r).text.splitlines()[0].split() == ["a", "b"], r
    assert r.main["json"] == [{"a": 1, "b": "x"}, {"a": 2, "b": "<y>"}], r
    assert r.main["html"].startswith('<table class="dataframe">') and "<td>&lt;y&gt;</td>" in r.main["html"], r


def r_display(r):
    df, html, main = ok(r).results
    assert not df["is_main_result"] and df["json"] == [{"a": 1, "b": "x"}, {"a": 2, "b": "<y>"}], r
    assert df["html"].startswith('<table class="dataframe">') and df["text"].splitlines()[0].split() == ["a", "b"]
    assert not html["is_main_result"] and html["html"] == "<b>hi</b>", r
    assert main["is_main_result"] and main["text"] == "[1] 3", r


def java_display(r):
    plain, html, image, main = ok(r).results
    assert plain == {"type": "result", "text": "plain", "is_main_result": False}, r
    assert html["html"] == "<b>hi</b>" and html["is_main_result"] is False, r
    assert image["text"] == "<image 5x4>" and png_decode(base64.b64decode(image["png"])) == (5, 4), r
    assert main["is_main_result"] and main["text"] == "7", r


def java_display_bad_type(r):
    assert r.err and r.err["name"] == "IllegalArgumentException", r
    assert "unknown MIME type text/bogus" in r.err["value"] and r.results == [], r


RICH = {
    "r": [
        ('plot(1:10)\nhist(c(1, 2, 2, 3))\nplot(1:3); abline(h = 2)\n"done"', r_plots),
        ("x <- 1", no_results),
        ('plot(1)\nstop("boom")', r_error_after_plot),
        ('data.frame(a = 1:2, b = c("x", "<y>"))', r_main_data_frame),
        ('display(data.frame(a = 1:2, b = c("x", "<y>"))); display_html("<b>hi</b>"); 3', r_display),
    ],
    "java": [
        ('display("plain"); display("<b>hi</b>", "text/html");\n'
         "display(new java.awt.image.BufferedImage(5, 4, java.awt.image.BufferedImage.TYPE_INT_RGB));\n7",
         java_display),
        ('display(1, "text/bogus");', java_display_bad_type),
    ],
}


@pytest.mark.parametrize("lang", sorted(RICH), indirect=True)
def test_rich_results(client, make_sandbox, lang):
    """Plots and display(): results besides the main one, as python.py's
    matplotlib figures and display() give."""
    sid = make_sandbox(memory="1Gi")["id"]
    for code, check in RICH[lang.name]:
        check(run_code(client, sid, code, language=lang.name))


MISSING = {"r": "R (Rscript is not installed)", "java": "Java (java is not installed)",
           "typescript": "TypeScript (the typescript module is not installed"}


def test_a_language_the_template_has_not_is_400_before_any_kernel(client, make_sandbox):
    """The `default` template's template.json lists its languages (python,
    javascript, bash): a run or a context in another is refused before any
    kernel starts, naming the template and what it has; /v1/info lists them."""
    need_default_template()
    langs = json.loads((DEFAULT_TEMPLATES / "default" / "template.json").read_text())["languages"]
    assert not set(MISSING) & set(langs), langs
    assert client.get("/v1/info").json()["template_languages"]["default"] == langs
    sid = make_sandbox(template="default")["id"]
    want = f"this sandbox's template has no %s: template default lists {', '.join(langs)} " \
        "(its template.json's languages)"
    for name, missing in sorted(MISSING.items()):
        title = missing.split()[0]
        r = run_code(client, sid, "1", language=name)
        assert r.status == 400 and r.error == {"code": 400, "message": want % title}, r
        body = assert_error(client.post(ctx_path(sid), {"language": name}), 400)
        assert body["message"] == want % title, body
    # Nothing was started or kept for them; a language it has runs.
    assert client.get(ctx_path(sid)).json()["contexts"] == []
    assert ok(run_code(client, sid, "1 + 1", language="python")).text == "2"


@pytest.fixture
def unlisted_template(templates_dir, unique):
    """`default`'s root filesystem as a template whose template.json does not
    say which languages it has."""
    need_default_template()
    name = f"nolangs-{unique}"
    d = templates_dir / name
    d.mkdir()
    (d / "rootfs").symlink_to(DEFAULT_ROOTFS)
    (d / "template.json").write_text(json.dumps({"name": name, "binds": [], "user": "user"}))
    yield name
    shutil.rmtree(d)


def test_a_template_that_does_not_say_lets_the_kernel_tell(client, make_sandbox, unlisted_template):
    """Without a languages list the kernel is started; the driver that finds
    its language missing says so, and that is a 400 too."""
    assert unlisted_template not in client.get("/v1/info").json()["template_languages"]
    sid = make_sandbox(template=unlisted_template)["id"]
    for name, missing in sorted(MISSING.items()):
        r = run_code(client, sid, "1", language=name)
        assert r.status == 400, r
        assert r.error["message"].startswith(f"the {name} kernel exited while starting: "
                                             f"this sandbox's template has no {missing}"), r
