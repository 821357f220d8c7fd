/* `sandpit code` output: the events of POST .../code (docs/agent-api.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"

void cli_code_state_init(CliCodeState *s, int out_fd, int err_fd, const char *save_dir)
{
        *s = (CliCodeState){.out_fd = out_fd, .err_fd = err_fd, .save_dir = save_dir};
}

void cli_code_state_done(CliCodeState *s)
{
        json_object_put(s->main_result);
        json_object_put(s->error);
        s->main_result = s->error = NULL;
}

static int write_bytes(CliCodeState *s, int fd, const char *p, size_t len)
{
        int r = write_all(fd, p, len);
        if (r < 0)
                s->write_failed = true;
        return r;
}

static int write_str(CliCodeState *s, int fd, const char *text)
{
        return write_bytes(s, fd, text, strlen(text));
}

/* Writes a base64 image field to save_dir/image-N.ext; the path in ret. */
static int save_image(CliCodeState *s, const char *b64, const char *ext, char *ret, size_t len)
{
        cleanup_free uint8_t *data = NULL;
        size_t n = 0;
        if (base64_decode(b64, &data, &n) < 0)
                return -EBADMSG;
        (void) snprintf(ret, len, "%s/image-%u.%s", s->save_dir, ++s->images, ext);
        cleanup_close int fd = open(ret, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return negative_errno();
        return write_bytes(s, fd, (const char *) data, n);
}

/* A display result (not the main one): its images, else its text. */
static int show_result(CliCodeState *s, json_object *ev)
{
        static const char *const images[][2] = {{"png", "png"}, {"jpeg", "jpg"}, {"svg", "svg"}};
        bool shown = false;
        for (size_t i = 0; i < ARRAY_SIZE(images); i++) {
                const char *data = json_str(ev, images[i][0]);
                if (!data)
                        continue;
                char line[4200], path[4096];
                int r = 0;
                if (!s->save_dir) {
                        (void) snprintf(line, sizeof(line),
                                        "[%s image: use --save-images DIR to keep it]\n",
                                        images[i][0]);
                } else if (streq(images[i][0], "svg")) {
                        (void) snprintf(path, sizeof(path), "%s/image-%u.svg", s->save_dir,
                                        ++s->images);
                        cleanup_close int fd =
                                open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                        r = fd < 0 ? negative_errno() : write_str(s, fd, data);
                        (void) snprintf(line, sizeof(line), "[image saved to %s]\n", path);
                } else {
                        r = save_image(s, data, images[i][1], path, sizeof(path));
                        (void) snprintf(line, sizeof(line), "[image saved to %s]\n", path);
                }
                if (r < 0)
                        (void) snprintf(line, sizeof(line), "[cannot save a %s image: %s]\n",
                                        images[i][0], strerror(-r));
                if ((r = write_str(s, s->out_fd, line)) < 0)
                        return r;
                shown = true;
        }
        const char *text = json_str(ev, "text");
        if (!shown && text) {
                int r = write_str(s, s->out_fd, text);
                return r < 0 ? r : write_str(s, s->out_fd, "\n");
        }
        return 0;
}

int cli_code_on_event(json_object *ev, void *userdata)
{
        CliCodeState *s = userdata;
        const char *t = json_str(ev, "type");
        int r = 0;
        if (!t) {
                r = -EBADMSG;
        } else if (streq(t, "stdout") || streq(t, "stderr")) {
                const char *text = json_str(ev, "text");
                r = text ? write_str(s, streq(t, "stdout") ? s->out_fd : s->err_fd, text)
                         : -EBADMSG;
        } else if (streq(t, "result")) {
                if (json_boolean(ev, "is_main_result", false)) {
                        json_object_put(s->main_result);
                        s->main_result = json_object_get(ev);
                } else {
                        r = show_result(s, ev);
                }
        } else if (streq(t, "error")) {
                json_object_put(s->error);
                s->error = json_object_get(ev);
        } else if (streq(t, "end_of_execution")) {
                s->ended = true;
                s->timed_out = json_boolean(ev, "timed_out", false);
        }
        return r;
}

/* The last non-empty line of text. */
static const char *last_line(const char *text)
{
        const char *end = text + strlen(text);
        while (end > text && end[-1] == '\n')
                end--;
        const char *p = end;
        while (p > text && p[-1] != '\n')
                p--;
        return p;
}

int cli_code_finish(CliCodeState *s)
{
        int r = 0;
        if (s->main_result)
                r = show_result(s, s->main_result);
        if (r == 0 && s->error) {
                const char *tb = json_str(s->error, "traceback"),
                           *name = json_str(s->error, "name"), *value = json_str(s->error, "value");
                if (tb && *tb) {
                        r = write_str(s, s->err_fd, tb);
                        if (r == 0 && tb[strlen(tb) - 1] != '\n')
                                r = write_str(s, s->err_fd, "\n");
                }
                /* The traceback ends with "Name: value" unless the agent renamed
                 * the error (a timeout's interrupt) or there is none. */
                const char *last = tb ? last_line(tb) : NULL;
                if (r == 0 && (!last || !name || strncmp(last, name, strlen(name)) != 0)) {
                        char line[1024];
                        (void) snprintf(line, sizeof(line), "%s: %s\n", name ? name : "Error",
                                        value ? value : "");
                        r = write_str(s, s->err_fd, line);
                }
        }
        if (r < 0)
                return CLI_EXIT_FAILURE;
        if (s->timed_out)
                return CLI_EXIT_TIMEOUT;
        return s->error ? CLI_EXIT_FAILURE : 0;
}
