/* The pure parts of the sandpit CLI: arguments to request JSON, exec event
 * decoding, exit statuses, base64 and formatting. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "cli.h"
#include "sandpit/macro.h"
#include "test-support.h"

#define PARSE(cmd, a, ...) cli_parse_args((cmd), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), (a))

static void test_create_request(void **state)
{
        (void) state;
        CliArgs a;

        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--template", "host", "--cpu", "500m",
                               "--memory", "536870912", "--disk", "1Gi", "--pids", "64",
                               "--timeout", "600", "-u", "root", "--env", "A=1", "-e", "B=x=y",
                               "--label", "team=ml", "--id", "my-box", "--json"),
                         0);
        assert_true(a.json);
        assert_false(a.help);
        assert_int_equal(a.n_args, 0);
        assert_json(a.create, "{\"template\":\"host\",\"cpu\":\"500m\",\"memory\":536870912,"
                              "\"disk\":\"1Gi\",\"pids\":64,\"timeout\":600,\"user\":\"root\","
                              "\"env\":{\"A\":\"1\",\"B\":\"x=y\"},\"labels\":{\"team\":\"ml\"},"
                              "\"id\":\"my-box\"}");
        assert_null(a.exec);
        cli_args_done(&a);

        /* Nothing given: an empty body, the agent's defaults apply. */
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create"), 0);
        assert_json(a.create, "{}");
        cli_args_done(&a);

        /* A fractional CPU count is a number. */
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--cpu=1.5", "--server", "http://h:1",
                               "--token-file", "/t"),
                         0);
        assert_json(a.create, "{\"cpu\":1.5}");
        assert_string_equal(a.server, "http://h:1");
        assert_string_equal(a.token_file, "/t");
        cli_args_done(&a);
}

static void test_network_args(void **state)
{
        (void) state;
        CliArgs a;

        /* --allow alone implies an allowlist; ports and protocol are optional. */
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--allow", "198.18.100.2/32:443,80",
                               "--allow", "198.18.0.0/24/udp", "--allow", "198.18.1.1:53/udp"),
                         0);
        assert_json(a.create, "{\"network\":{\"egress\":\"allowlist\",\"allow\":["
                              "{\"cidr\":\"198.18.100.2/32\",\"ports\":[443,80]},"
                              "{\"cidr\":\"198.18.0.0/24\",\"protocol\":\"udp\"},"
                              "{\"cidr\":\"198.18.1.1\",\"ports\":[53],\"protocol\":\"udp\"}]}}");
        cli_args_done(&a);

        /* --deny alone implies allow; an explicit --egress wins. */
        assert_int_equal(PARSE(CLI_CMD_RUN, &a, "run", "--deny", "198.18.5.0/24", "--", "true"), 0);
        assert_json(a.create, "{\"network\":{\"egress\":\"allow\",\"deny\":["
                              "{\"cidr\":\"198.18.5.0/24\"}]}}");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--egress", "deny"), 0);
        assert_json(a.create, "{\"network\":{\"egress\":\"deny\"}}");
        cli_args_done(&a);

        /* Malformed: usage errors, nothing sent. */
        static const char *const bad[] = {"198.18.0.1:",        "198.18.0.1:0", "198.18.0.1:70000",
                                          "198.18.0.1:80/sctp", ":80",          "198.18.0.1:a,b",
                                          "198.18.0.1:80,,"};
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                json_object *rule = NULL;
                assert_int_equal(cli_parse_net_rule(bad[i], &rule), -EINVAL);
                assert_null(rule);
        }
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--egress", "open"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--allow", "1.2.3.4:0"), -EINVAL);
        cli_args_done(&a);
}

static void test_files_args(void **state)
{
        (void) state;
        CliArgs a;
        char *id = NULL;
        const char *path = NULL;

        assert_true(cli_remote_path("box:/tmp/x", &id, &path));
        assert_string_equal(id, "box");
        assert_string_equal(path, "/tmp/x");
        free(id);
        assert_true(cli_remote_path("box:", NULL, &path));
        assert_string_equal(path, "");
        assert_false(cli_remote_path("./a:b", NULL, NULL));
        assert_false(cli_remote_path(":x", NULL, NULL));
        assert_false(cli_remote_path("/abs/path", NULL, NULL));

        assert_int_equal(PARSE(CLI_CMD_CP, &a, "cp", "--user", "root", "f", "box:/tmp/"), 0);
        assert_string_equal(a.user, "root");
        assert_int_equal(a.n_args, 2);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CP, &a, "cp", "a", "b"), -EINVAL);
        assert_string_equal(a.error, "cp: exactly one of SRC and DST must be ID:PATH");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CP, &a, "cp", "x:a", "y:b"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CP, &a, "cp", "x:a"), -EINVAL);
        assert_string_equal(a.error, "cp: missing destination");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "ls", "--depth", "3", "box", "/tmp"), 0);
        assert_int_equal(a.depth, 3);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "rm", "-r", "box", "/tmp/d"), 0);
        assert_true(a.recursive);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "mv", "box", "/a", "/b"), 0);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "mv", "box", "/a"), -EINVAL);
        assert_string_equal(a.error, "fs mv: missing destination");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "cat", "box", "/a"), -EINVAL);
        assert_string_equal(a.error, "fs: unknown subcommand 'cat'");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "ls", "-r", "box", "/a"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "ls", "--depth", "0", "box", "/a"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "stat", "box"), -EINVAL);
        assert_string_equal(a.error, "fs stat: missing path");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_FS, &a, "fs", "stat", "box", "/a", "/b"), -EINVAL);
        cli_args_done(&a);
}

static void test_usage_errors(void **state)
{
        (void) state;
        CliArgs a;

        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--bogus"), -EINVAL);
        assert_string_equal(a.error, "create: unknown option '--bogus'");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--memory"), -EINVAL);
        assert_string_equal(a.error, "create: option '--memory' needs an argument");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "-e"), -EINVAL);
        assert_string_equal(a.error, "exec: option '--env' needs an argument");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--env", "NOVALUE"), -EINVAL);
        assert_string_equal(a.error, "--env expects KEY=VALUE, got 'NOVALUE'");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--label", "=x"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--pids", "12x"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "--timeout", "1.5"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "--timeout", "-1", "id", "ls"), -EINVAL);
        cli_args_done(&a);

        /* Options of other commands are unknown here. */
        assert_int_equal(PARSE(CLI_CMD_LS, &a, "ls", "--cpu", "1"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_CREATE, &a, "create", "extra"), -EINVAL);
        assert_string_equal(a.error, "create: unexpected argument 'extra'");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_GET, &a, "get"), -EINVAL);
        assert_string_equal(a.error, "get: missing sandbox id");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_KILL, &a, "kill"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "box"), -EINVAL);
        assert_string_equal(a.error, "exec: missing command");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "box", "--"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_RUN, &a, "run", "--"), -EINVAL);
        assert_string_equal(a.error, "run: missing command");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_TIMEOUT, &a, "timeout", "box", "soon"), -EINVAL);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_SIGNAL, &a, "signal", "box"), -EINVAL);
        assert_string_equal(a.error, "signal: missing pid and signal");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_ATTACH, &a, "attach", "box", "x"), -EINVAL);
        cli_args_done(&a);

        /* --help wins over missing arguments. */
        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "--help"), 0);
        assert_true(a.help);
        cli_args_done(&a);
}

static void test_exec_request(void **state)
{
        (void) state;
        CliArgs a;

        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "--env", "X=1", "-w", "/tmp", "--user",
                               "root", "--timeout", "2.5", "--tag", "t", "box", "--", "ls", "-l",
                               "--color"),
                         0);
        assert_int_equal(a.n_args, 5);
        assert_string_equal(a.args[0], "box");
        assert_json(a.exec, "{\"env\":{\"X\":\"1\"},\"cwd\":\"/tmp\",\"user\":\"root\","
                            "\"timeout\":2.5,\"tag\":\"t\",\"cmd\":[\"ls\",\"-l\",\"--color\"]}");
        assert_null(a.create);
        cli_args_done(&a);

        /* Without "--", options stop at the id: the rest is the command's. */
        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "-i", "box", "grep", "-v", "--", "x"), 0);
        assert_true(a.read_stdin);
        assert_json(a.exec, "{\"cmd\":[\"grep\",\"-v\",\"--\",\"x\"]}");
        cli_args_done(&a);

        /* -it: a terminal and live stdin; "pty" is added when the size is known. */
        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "-it", "box", "--", "bash"), 0);
        assert_true(a.read_stdin);
        assert_true(a.tty);
        assert_json(a.exec, "{\"cmd\":[\"bash\"]}");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "--tty", "box", "top"), 0);
        assert_true(a.tty);
        assert_false(a.read_stdin);
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "-td", "box", "top"), -EINVAL);
        assert_string_equal(a.error, "exec: -t and --background do not go together");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_RUN, &a, "run", "-t", "top"), -EINVAL);
        assert_string_equal(a.error, "run: unknown option '-t'");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "box", "--env", "X=1"), 0);
        assert_json(a.exec, "{\"cmd\":[\"--env\",\"X=1\"]}");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_EXEC, &a, "exec", "--shell", "-d", "box", "--", "echo",
                               "$HOME", "|", "wc -c"),
                         0);
        assert_true(a.background);
        assert_json(a.exec, "{\"shell\":\"echo $HOME | wc -c\",\"background\":true}");
        cli_args_done(&a);
}

static void test_run_request(void **state)
{
        (void) state;
        CliArgs a;

        assert_int_equal(PARSE(CLI_CMD_RUN, &a, "run", "--template", "host", "--memory", "1Gi",
                               "--env", "A=1", "--user", "root", "--timeout", "2.5", "--cwd", "/",
                               "--label", "k=v", "--", "python3", "-c", "print(1)"),
                         0);
        assert_json(a.create, "{\"template\":\"host\",\"memory\":\"1Gi\",\"env\":{\"A\":\"1\"},"
                              "\"user\":\"root\",\"timeout\":63,\"labels\":{\"k\":\"v\"}}");
        assert_json(a.exec, "{\"timeout\":2.5,\"cwd\":\"/\",\"cmd\":[\"python3\",\"-c\","
                            "\"print(1)\"]}");
        cli_args_done(&a);

        /* The first non-option starts the command. */
        assert_int_equal(PARSE(CLI_CMD_RUN, &a, "run", "ls", "-la"), 0);
        assert_json(a.create, "{}");
        assert_json(a.exec, "{\"cmd\":[\"ls\",\"-la\"]}");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_RUN, &a, "run", "--timeout", "1000000", "true"), 0);
        assert_json(a.create, "{\"timeout\":604800}");
        cli_args_done(&a);
}

static void test_other_requests(void **state)
{
        (void) state;
        CliArgs a;

        /* Options may follow positional arguments for commands without a CMD. */
        assert_int_equal(PARSE(CLI_CMD_LS, &a, "ls", "--label", "team=ml", "-l", "a=b c", "--json"),
                         0);
        assert_true(a.json);
        assert_json(a.filters, "[\"team=ml\",\"a=b c\"]");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_GET, &a, "get", "box", "--server", "unix:///s"), 0);
        assert_int_equal(a.n_args, 1);
        assert_string_equal(a.args[0], "box");
        assert_string_equal(a.server, "unix:///s");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_TIMEOUT, &a, "timeout", "box", "600"), 0);
        assert_json(a.body, "{\"timeout\":600}");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_SIGNAL, &a, "signal", "box", "7", "9"), 0);
        assert_json(a.body, "{\"signal\":9}");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_SIGNAL, &a, "signal", "box", "7", "TERM"), 0);
        assert_json(a.body, "{\"signal\":\"TERM\"}");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_KILL, &a, "kill", "a", "b", "c"), 0);
        assert_int_equal(a.n_args, 3);
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_ATTACH, &a, "attach", "box", "7"), 0);
        cli_args_done(&a);
}

static void test_command_names(void **state)
{
        (void) state;
        CliCommand c;

        for (int i = 0; i < CLI_CMD_COUNT; i++) {
                assert_int_equal(cli_command_from_name(cli_command_name((CliCommand) i), &c), 0);
                assert_int_equal(c, i);
        }
        assert_int_equal(cli_command_from_name("rm", &c), -EINVAL);
}

static void test_exit_status(void **state)
{
        (void) state;
        static const struct {
                const char *event;
                int status;
        } cases[] = {
                {"{\"type\":\"exit\",\"exit_code\":0,\"signal\":0,\"timed_out\":false}", 0},
                {"{\"type\":\"exit\",\"exit_code\":3,\"signal\":0}", 3},
                {"{\"type\":\"exit\",\"exit_code\":-1,\"signal\":9,\"oom_killed\":true}", 137},
                {"{\"type\":\"exit\",\"exit_code\":-1,\"signal\":15}", 143},
                {"{\"type\":\"exit\",\"exit_code\":-1,\"signal\":9,\"timed_out\":true}", 124},
                {"{\"type\":\"exit\",\"exit_code\":0,\"timed_out\":true}", 124},
                {"{\"type\":\"exit\",\"exit_code\":-1,\"signal\":0}", 1},
                {"{\"type\":\"exit\",\"exit_code\":256}", 0},
                {"{\"type\":\"exit\",\"exit_code\":null,\"signal\":null}", 1},
                {"{\"type\":\"exit\"}", 1},
        };

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                json_object *ev = parse(cases[i].event);
                assert_int_equal(cli_exit_status_from_event(ev), cases[i].status);
                json_object_put(ev);
        }
}

static char *read_fd(int fd)
{
        char *buf = NULL;
        size_t len = 0;
        assert_int_equal(cli_read_all(fd, 1 << 20, &buf, &len), 0);
        return buf;
}

/* One event as lib's agent client hands it over: parsed (a line that is not
 * JSON fails the stream there, -EBADMSG). */
static int feed(CliExecState *st, const char *line)
{
        json_object *ev = NULL;
        if (json_parse_strict(line, strlen(line), 0, &ev, NULL) < 0)
                return -EBADMSG;
        int r = cli_exec_on_event(ev, st);
        json_object_put(ev);
        return r;
}

static void test_exec_events(void **state)
{
        (void) state;
        int out[2], err[2];
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        assert_int_equal(pipe2(err, O_CLOEXEC), 0);

        CliExecState st;
        cli_exec_state_init(&st, out[1], err[1]);
        assert_false(st.exited);
        assert_int_equal(feed(&st, "{\"type\":\"start\",\"pid\":7}"), 0);
        assert_int_equal(st.pid, 7);
        assert_int_equal(feed(&st, "{\"type\":\"stdout\",\"data\":\"h\xc3\xa9\"}"), 0);
        /* "\xff\x00z\n" is not UTF-8: base64. */
        assert_int_equal(feed(&st, "{\"type\":\"stdout\",\"data_b64\":\"/wB6Cg==\"}"), 0);
        assert_int_equal(feed(&st, "{\"type\":\"stderr\",\"data\":\"warn\\n\"}"), 0);
        /* A terminal's output (exec -t) goes to stdout as it is: "\r\n" stays. */
        assert_int_equal(feed(&st, "{\"type\":\"pty\",\"data_b64\":\"JCANCg==\"}"), 0);
        assert_int_equal(feed(&st, "{\"type\":\"progress\",\"whatever\":1}"), 0);
        assert_int_equal(feed(&st, "{\"type\":\"exit\",\"pid\":7,\"exit_code\":-1,\"signal\":9,"
                                   "\"timed_out\":false,\"oom_killed\":true}"),
                         0);
        assert_true(st.exited);
        assert_true(st.oom_killed);
        assert_int_equal(st.exit_status, 137);

        assert_int_equal(feed(&st, "not json"), -EBADMSG);
        assert_int_equal(feed(&st, "[1,2]"), -EBADMSG);
        assert_int_equal(feed(&st, "{\"type\":\"stdout\"}"), -EBADMSG);
        assert_int_equal(feed(&st, "{\"type\":\"stdout\",\"data_b64\":\"%%%\"}"), -EBADMSG);
        assert_false(st.write_failed);

        close(out[1]);
        close(err[1]);
        cleanup_free char *o = read_fd(out[0]);
        cleanup_free char *e = read_fd(err[0]);
        close(out[0]);
        close(err[0]);
        assert_memory_equal(o, "h\xc3\xa9\xff\x00z\n$ \r\n", 11);
        assert_string_equal(e, "warn\n");

        /* A reader that went away. */
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        close(out[0]);
        cli_exec_state_init(&st, out[1], out[1]);
        assert_int_equal(feed(&st, "{\"type\":\"stdout\",\"data\":\"x\"}"), -EPIPE);
        assert_true(st.write_failed);
        close(out[1]);
}

/* A command whose agent cannot be reached: exit 1 and one line that says
 * where and why (not the agent's 404 wording: nothing answered). */
static void test_agent_unreachable(void **state)
{
        (void) state;
        char url[128];
        snprintf(url, sizeof(url), "unix:///nonexistent-%d/agent.sock", (int) getpid());
        cleanup_agent_client AgentClient *agent = NULL;
        assert_int_equal(agent_client_new(url, NULL, &agent), 0);
        CliContext ctx = {.agent = agent, .url = url};
        CliArgs a;
        assert_int_equal(PARSE(CLI_CMD_GET, &a, "get", "sbx-1"), 0);
        assert_int_equal(cli_run(&ctx, &a), -ENOENT);
        char want[256];
        snprintf(want, sizeof(want), "cannot reach the agent at %s: %s", url, strerror(ENOENT));
        assert_string_equal(ctx.error, want);
        cli_args_done(&a);

        /* kill goes on with the next id and fails as a whole. */
        ctx.error[0] = 0;
        assert_int_equal(PARSE(CLI_CMD_KILL, &a, "kill", "a", "b"), 0);
        assert_int_equal(cli_run(&ctx, &a), CLI_EXIT_FAILURE);
        assert_string_equal(ctx.error, want);
        cli_args_done(&a);
}

static void test_helpers(void **state)
{
        (void) state;
        char buf[64];
        int64_t i = 0;
        double d = 0;
        json_object *q = NULL;

        cli_format_bytes(536870912, buf, sizeof(buf));
        assert_string_equal(buf, "512Mi");
        cli_format_bytes(1610612736, buf, sizeof(buf));
        assert_string_equal(buf, "1.5Gi");
        cli_format_bytes(1000, buf, sizeof(buf));
        assert_string_equal(buf, "1000");
        cli_format_bytes(4096, buf, sizeof(buf));
        assert_string_equal(buf, "4Ki");

        /* 2026-11-22T10:05:00Z is 1795341900. */
        cli_format_remaining("2026-11-22T10:05:00.000Z", 1795341900 - 299, buf, sizeof(buf));
        assert_string_equal(buf, "4m59s");
        cli_format_remaining("2026-11-22T10:05:00.000Z", 1795341900 - 30, buf, sizeof(buf));
        assert_string_equal(buf, "30s");
        cli_format_remaining("2026-11-22T10:05:00.000Z", 1795341900 - 7500, buf, sizeof(buf));
        assert_string_equal(buf, "2h05m");
        cli_format_remaining("2026-11-22T10:05:00.000Z", 1795341900 - 90000, buf, sizeof(buf));
        assert_string_equal(buf, "1d01h");
        cli_format_remaining("2026-11-22T10:05:00.000Z", 1795341900, buf, sizeof(buf));
        assert_string_equal(buf, "expired");
        cli_format_remaining("soon", 0, buf, sizeof(buf));
        assert_string_equal(buf, "soon");
        cli_format_remaining(NULL, 0, buf, sizeof(buf));
        assert_string_equal(buf, "-");

        assert_int_equal(cli_parse_int("42", 1, 100, &i), 0);
        assert_int_equal(i, 42);
        assert_int_equal(cli_parse_int("0", 1, 100, &i), -ERANGE);
        assert_int_equal(cli_parse_int(" 4", 1, 100, &i), -EINVAL);
        assert_int_equal(cli_parse_int("", 1, 100, &i), -EINVAL);
        assert_int_equal(cli_parse_int("99999999999999999999", 1, INT64_MAX, &i), -EINVAL);
        assert_int_equal(cli_parse_seconds("0.5", &d), 0);
        assert_true(d == 0.5);
        assert_int_equal(cli_parse_seconds("0", &d), -ERANGE);
        assert_int_equal(cli_parse_seconds("nan", &d), -EINVAL);
        assert_int_equal(cli_parse_seconds("inf", &d), -EINVAL);

        assert_int_equal(cli_quantity_json("512Mi", &q), 0);
        assert_json(q, "\"512Mi\"");
        json_object_put(q);
        assert_int_equal(cli_quantity_json("1024", &q), 0);
        assert_json(q, "1024");
        json_object_put(q);
        assert_int_equal(cli_quantity_json("0.25", &q), 0);
        assert_json(q, "0.25");
        json_object_put(q);
        assert_int_equal(cli_quantity_json("", &q), -EINVAL);

        cli_one_line("a\nb\tc", buf, sizeof(buf));
        assert_string_equal(buf, "a b c");
        cli_one_line("abcdef", buf, 4);
        assert_string_equal(buf, "abc");
}

static void test_table(void **state)
{
        (void) state;
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);

        const char *cells[] = {"ID", "STATE", "CPU", "abc", "running", "1", "x", NULL, "0.5"};
        assert_int_equal(cli_print_table(f, cells, 3, 3), 0);
        fclose(f);
        assert_string_equal(text, "ID    STATE     CPU\n"
                                  "abc   running   1\n"
                                  "x               0.5\n");
        free(text);
}

static void test_mcp_gateway_ca(void **state)
{
        (void) state;
        CliArgs a;
        assert_int_equal(
                PARSE(CLI_CMD_MCP, &a, "mcp", "--url", "https://g/mcp", "--gateway-ca", "/ca.pem"),
                0);
        assert_string_equal(a.mcp_url, "https://g/mcp");
        assert_string_equal(a.gateway_ca, "/ca.pem");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_MCP, &a, "mcp", "--url", "https://g/mcp"), 0);
        assert_null(a.gateway_ca);
        cli_args_done(&a);
        /* an empty file name, and the option on another command: usage errors */
        assert_int_not_equal(PARSE(CLI_CMD_MCP, &a, "mcp", "--gateway-ca", ""), 0);
        assert_non_null(strstr(a.error, "--gateway-ca"));
        cli_args_done(&a);
        assert_int_not_equal(PARSE(CLI_CMD_LS, &a, "ls", "--gateway-ca", "/ca.pem"), 0);
        cli_args_done(&a);
}

static void test_template_build_args(void **state)
{
        (void) state;
        CliArgs a;
        assert_int_equal(PARSE(CLI_CMD_TEMPLATE, &a, "template", "build", "-t", "app:1", "-f", "df",
                               "--build-arg", "A=1", "--build-arg", "B=x=y", "--memory", "1Gi",
                               "--egress", "deny", "--target", "final", "ctx"),
                         0);
        assert_string_equal(a.build_tag, "app:1");
        assert_string_equal(a.build_target, "final");
        assert_string_equal(a.dockerfile, "df");
        assert_int_equal(a.n_args, 2);
        assert_string_equal(a.args[1], "ctx");
        assert_json(a.build_args, "[\"A=1\",\"B=x=y\"]");
        assert_json(a.create, "{\"memory\":\"1Gi\",\"network\":{\"egress\":\"deny\"}}");
        cli_args_done(&a);

        assert_int_equal(PARSE(CLI_CMD_TEMPLATE, &a, "template", "build", "ctx"), -EINVAL);
        assert_string_equal(a.error, "template build: give the image's name with -t NAME");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_TEMPLATE, &a, "template", "build", "-t", "x", "a", "b"),
                         -EINVAL);
        assert_string_equal(a.error, "template build: unexpected argument 'b'");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_TEMPLATE, &a, "template", "build", "-t", "x", "--build-arg",
                               "NOVALUE"),
                         -EINVAL);
        assert_string_equal(a.error, "--build-arg expects NAME=VALUE, got 'NOVALUE'");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_TEMPLATE, &a, "template", "pull", "-t", "x", "REF"),
                         -EINVAL);
        assert_string_equal(
                a.error,
                "template pull: -t, -f, --build-arg, --target and the sandbox options are for "
                "build");
        cli_args_done(&a);
        assert_int_equal(PARSE(CLI_CMD_TEMPLATE, &a, "template", "pull", "--target", "x", "REF"),
                         -EINVAL);
        cli_args_done(&a);
}

int main(void)
{
        /* As the sandpit binary does: a closed pipe is EPIPE, not death. */
        (void) signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create_request),
                cmocka_unit_test(test_usage_errors),
                cmocka_unit_test(test_mcp_gateway_ca),
                cmocka_unit_test(test_exec_request),
                cmocka_unit_test(test_run_request),
                cmocka_unit_test(test_other_requests),
                cmocka_unit_test(test_command_names),
                cmocka_unit_test(test_exit_status),
                cmocka_unit_test(test_exec_events),
                cmocka_unit_test(test_helpers),
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_agent_unreachable),
                cmocka_unit_test(test_files_args),
                cmocka_unit_test(test_network_args),
                cmocka_unit_test(test_template_build_args),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
