"""The real E2B SDKs against the gateway, one node script of js/ a test (run
for each pinned SDK release line). What each asserts is what the SDK call
answered, so a gateway answer the SDK does not understand fails here."""

import pytest

pytestmark = pytest.mark.slow


def test_code_interpreter(sdk):
    out = sdk("code.mjs")
    assert out["state"] == "2"  # x = 1, then x + 1 in a later call
    assert "<table" in out["dfHtml"] and "dataframe" in out["dfHtml"]
    assert out["errName"] == "ZeroDivisionError"
    assert out["errValue"] == "division by zero"
    assert out["pngMagic"] == "89504e470d0a1a0a"  # a PNG file's signature
    assert out["envFromCreate"] == "hello-from-create\n"
    assert out["onStdout"] == "hello-from-create\n"
    assert out["js"] in ("'2,4,6'", "2,4,6")
    assert out["ctxCwd"] == "/tmp"
    assert out["ctxState"] == "42"
    assert out["ctxIsolated"] == "False"
    assert out["contexts"] is True
    assert out["killed"] is True


def test_code_interpreter_languages(sdk):
    out = sdk("code-languages.mjs")
    assert out["template"] == "code-interpreter-v1"  # sandpit's code-interpreter template
    assert out["ts"] == "42"
    assert out["r"] == "[1] 42" and out["rStdout"] == "from r\n"
    assert out["java"] == "42"
    assert out["javaErr"] == "NumberFormatException"
    assert out["rPng"] == ["89504e470d0a1a0a"]  # a PNG file's signature
    assert out["javaHtml"] == ["<b>hi</b>"]
    assert out["rCtx"] == "r"
    assert out["rCtxIsolated"] == "[1] FALSE"
    assert out["killed"] is True


def test_files(sdk):
    out = sdk("files.mjs")
    assert out["writePath"] == "/home/user/compat/a.txt"
    assert out["readText"] == "hello files\n"
    assert out["bytesEqual"] is True
    assert out["multi"] == ["m1.txt", "m2.txt"]
    assert out["mkdir"] is True and out["mkdirAgain"] is False
    assert out["list"] == ["a.txt:file", "b.bin:file", "m1.txt:file", "m2.txt:file", "sub:dir"]
    assert out["existsTrue"] is True and out["existsFalse"] is False
    assert out["info"] == {"name": "a.txt", "type": "file", "size": 12, "path": "/home/user/compat/a.txt"}
    assert "create:watched.txt" in out["watch"]  # watchDir saw the write as it happened
    assert out["rename"] == "/home/user/compat/c.txt"
    assert out["removed"] is True
    assert out["missing"] == "FileNotFoundError"
    assert out["killed"] is True


def test_commands(sdk):
    out = sdk("commands.mjs")
    assert out["stdout"] == "one\ntwo\nyes\n"  # envs of create reach commands
    assert out["stderr"] == "err\n"
    assert out["exitCode"] == 0
    assert out["chunks"] >= 2  # onStdout saw the output as it came, not at the end
    assert out["exit"] == {"isCommandExitError": True, "exitCode": 3, "stdout": "partial\n"}
    assert out["cwdUser"] == "/tmp\nuser\n"
    assert out["asRoot"] == "root\n/root\n"  # user: 'root' (Authorization: Basic)
    assert out["rootFile"] == "root\n"
    assert out["listed"] is True
    assert out["killPid"] is True
    assert out["bg"]["exitCode"] != 0 and out["bg"]["stdout"] == "fed on stdin\n"
    assert out["killMissing"] is False
    assert out["connect"] == "reconnected\n"
    assert out["timeout"] == "TimeoutError"  # timeoutMs: the command's deadline
    assert out["killed"] is True
    # The stream of a command whose sandbox was killed ended with an error
    # instead of hanging (the bound is generous: the command sleeps 600 s).
    assert out["orphan"] != "resolved"
    assert out["orphan"]["error"] == "TimeoutError"
    assert out["orphan"]["ms"] < 30_000


def test_lifecycle(sdk):
    out = sdk("lifecycle.mjs")
    assert out["info"]["id"] is True
    assert out["info"]["metadata"]["n"] == "1" and out["info"]["metadata"]["run"].startswith("compat-")
    assert out["info"]["state"] == "running"
    assert out["info"]["templateId"] == "code-interpreter-v1"
    assert out["timeoutMoved"] is True
    assert out["listed"] == ["1", "2"]
    assert out["listedOne"] == [True]
    assert out["pages"] == ["1", "2"]  # limit 1: two pages through X-Next-Token
    assert out["metrics"] is True
    assert out["paused"] is True
    assert out["pausedState"] == "paused"
    assert out["pausedListed"] == [True]
    assert out["resumedState"] == "running"
    assert out["kept"] == "'state before pause'"
    assert out["killA"] is True and out["killB"] is True
    assert out["killAgain"] is False
    assert out["gone"] == "SandboxNotFoundError"
    assert out["listedAfter"] == 0


def test_pty(sdk):
    out = sdk("pty.mjs")
    assert out["pid"] > 0
    assert out["hi"] is True, out["text"]  # typed input echoed by the shell, then its output
    assert out["sizeBefore"] is True, out["text"]  # stty size: the size of create
    assert out["sizeAfter"] is True, out["text"]  # ... and of resize
    assert out["listed"] is True
    assert out["killed"] is True
    assert out["wait"]["exitCode"] != 0  # wait() ended (killed: not a clean exit)
    assert out["resizeMissing"] == "NotFoundError"


def test_get_host_port_proxy(sdk):
    out = sdk("ports.mjs")
    assert out["hostNames"] is True, out["host"]
    assert out["status"] == 200, out
    assert out["contentType"].startswith("text/html")
    assert "Directory listing" in out["listing"] and "hello-from-sandbox.txt" in out["listing"]
    assert out["file"] == {"status": 200, "body": "hello"}
    assert out["missing"] == 404  # the server's own status comes through
    assert out["closedPort"] == 502  # nothing listens there


def test_auto_pause(sdk):
    """lifecycle onTimeout 'pause' (autoPause): paused at the deadline, not
    killed; connect resumes it with its memory kept."""
    out = sdk("autopause.mjs")
    assert out["stateBefore"] == "running"
    assert out["lifecycle"]["onTimeout"] == "pause"
    assert out["stateAtDeadline"] == "paused"
    assert out["listedPaused"] is True
    assert out["resumedState"] == "running"
    assert out["kept"] == "7"
    assert out["killed"] is True
