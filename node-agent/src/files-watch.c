/* inotify watches for a sandbox's directories (see files-watch.h). */
#include "files-watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <json-c/json.h>

#include "files.h"
#include "sandpit/macro.h"

#define WATCHES_MAX 8192
/* inotify instances count against root's fs.inotify.max_user_instances (128 by
 * default), shared with the host's own services: bound what sandboxes can take. */
#define STREAMS_MAX 32

static int streams; /* open watch streams; atomic builtins */
#define KEEPALIVE_MS 30000
#define EVENT_MASK                                                                     \
        (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | \
         IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

typedef struct {
        int wd;
        char *path;
} WatchDir;

struct FsWatch {
        FsRoot cred; /* uid and gid only */
        /* The rootfs's host path, opened afresh for each new subdirectory: an fd
         * kept open would pin the mount, so a deleted sandbox could not be
         * unmounted and the stream would never see its directory go. */
        char *rootfs;
        int ifd;
        bool recursive;
        WatchDir *dirs;
        size_t n_dirs;
        int top_wd;
        bool started, ended;
        bool counted;  /* holds one of STREAMS_MAX */
        char *pending; /* NDJSON not yet handed out */
        size_t pending_len, pending_off;
        size_t last_off; /* where the last event line starts in pending */
        char evbuf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
};

static void watch_free(void *cls)
{
        FsWatch *w = cls;
        if (!w)
                return;
        if (w->counted)
                (void) __atomic_sub_fetch(&streams, 1, __ATOMIC_SEQ_CST);
        for (size_t i = 0; i < w->n_dirs; i++)
                free(w->dirs[i].path);
        free(w->dirs);
        closep(&w->ifd);
        free(w->rootfs);
        free(w->pending);
        free(w);
}

static const char *dir_path(const FsWatch *w, int wd)
{
        for (size_t i = 0; i < w->n_dirs; i++)
                if (w->dirs[i].wd == wd)
                        return w->dirs[i].path;
        return NULL;
}

/* Watches the directory fd (opened as the user, which checked read access). */
static int add_watch(FsWatch *w, int fd, const char *path)
{
        if (w->n_dirs >= WATCHES_MAX)
                return -ENOSPC;
        char proc[64];
        (void) snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        int wd = inotify_add_watch(w->ifd, proc, EVENT_MASK);
        if (wd < 0)
                return -errno;
        for (size_t i = 0; i < w->n_dirs; i++)
                if (w->dirs[i].wd == wd)
                        return wd; /* already watched */
        WatchDir *p = realloc(w->dirs, (w->n_dirs + 1) * sizeof(*p));
        if (!p)
                return -ENOMEM;
        w->dirs = p;
        if (!(p[w->n_dirs].path = strdup(path)))
                return -ENOMEM;
        p[w->n_dirs++].wd = wd;
        return wd;
}

static int emit_entry(FsWatch *w, const char *type, const char *path, const char *name,
                      bool is_dir);

/*
 * Watches the tree at fd. With announce (a directory that appeared while the
 * stream was open), every entry already inside gets a "create" event: those
 * were made before the new directory's watch existed, so inotify never saw
 * them. An entry made in the gap can be reported twice; none is lost.
 */
static int add_tree(FsWatch *w, int fd, const char *path, unsigned level, bool announce)
{
        int wd = add_watch(w, fd, path);
        if (wd < 0 || !w->recursive || level >= FILES_DEPTH_MAX)
                return wd;
        int dfd = dup(fd);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (!d) {
                if (dfd >= 0)
                        (void) close(dfd);
                return wd;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                char *cpath = NULL;
                if (asprintf(&cpath, "%s/%s", streq(path, "/") ? "" : path, de->d_name) < 0)
                        break;
                if (announce)
                        (void) emit_entry(w, "create", cpath, de->d_name, de->d_type == DT_DIR);
                if (de->d_type != DT_DIR) {
                        free(cpath);
                        continue;
                }
                FsCred c;
                if (fscred_enter(&w->cred, &c) < 0) {
                        free(cpath);
                        break;
                }
                int cfd = fsroot_open_child(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY, 0);
                fscred_leave(&c);
                if (cfd >= 0) { /* unreadable: not watched */
                        (void) add_tree(w, cfd, cpath, level + 1, announce);
                        (void) close(cfd);
                }
                free(cpath);
        }
        (void) closedir(d);
        return wd;
}

int fs_watch_new(const FsRoot *root, const char *abspath, bool recursive, FsWatch **ret)
{
        FsWatch *w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->cred = (FsRoot){
                .root_fd = -1, .uid = root->uid, .gid = root->gid, .id_shift = root->id_shift};
        w->recursive = recursive;
        w->ifd = -1;
        w->counted = true;
        if (__atomic_add_fetch(&streams, 1, __ATOMIC_SEQ_CST) > STREAMS_MAX) {
                watch_free(w);
                return -EAGAIN;
        }
        w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        w->rootfs = strdup(root->rootfs);
        if (w->ifd < 0 || !w->rootfs) {
                int k = w->ifd < 0 ? -errno : -ENOMEM;
                watch_free(w);
                return k;
        }
        FsCred c;
        int k = fscred_enter(root, &c);
        if (k < 0) {
                watch_free(w);
                return k;
        }
        int fd = fsroot_open_path(root, abspath, O_RDONLY | O_DIRECTORY, 0);
        fscred_leave(&c);
        if (fd < 0) {
                watch_free(w);
                return fd;
        }
        k = add_tree(w, fd, abspath, 0, false);
        (void) close(fd);
        if (k < 0) {
                watch_free(w);
                return k;
        }
        w->top_wd = k;
        *ret = w;
        return 0;
}

static int emit(FsWatch *w, json_object *o)
{
        size_t len = 0;
        const char *s = json_object_to_json_string_length(
                o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
        /* A burst of writes to one file is one event until the client reads. */
        if (s && w->pending_len > w->pending_off && w->pending_len - w->last_off == len + 1 &&
            memcmp(w->pending + w->last_off, s, len) == 0) {
                json_object_put(o);
                return 0;
        }
        w->last_off = w->pending_len;
        char *p = s ? realloc(w->pending, w->pending_len + len + 1) : NULL;
        if (!p) {
                json_object_put(o);
                return -ENOMEM;
        }
        memcpy(p + w->pending_len, s, len);
        p[w->pending_len + len] = '\n';
        w->pending = p;
        w->pending_len += len + 1;
        json_object_put(o);
        return 0;
}

static int emit_simple(FsWatch *w, const char *type)
{
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "type", json_object_new_string(type));
        return emit(w, o);
}

static int emit_entry(FsWatch *w, const char *type, const char *path, const char *name, bool is_dir)
{
        json_object *o = json_object_new_object();
        (void) json_object_object_add(o, "type", json_object_new_string(type));
        (void) json_object_object_add(o, "path", json_object_new_string(path));
        (void) json_object_object_add(o, "name", json_object_new_string(name));
        (void) json_object_object_add(o, "is_dir", json_object_new_boolean(is_dir));
        return emit(w, o);
}

static const char *event_type(uint32_t mask)
{
        if (mask & IN_CREATE || mask & IN_MOVED_TO)
                return "create";
        if (mask & IN_MODIFY)
                return "write";
        if (mask & IN_DELETE)
                return "remove";
        if (mask & IN_MOVED_FROM)
                return "rename";
        if (mask & IN_ATTRIB)
                return "chmod";
        return NULL;
}

static int handle_event(FsWatch *w, const struct inotify_event *ev)
{
        if (ev->mask & IN_Q_OVERFLOW)
                return emit_simple(w, "overflow");
        if (ev->wd == w->top_wd && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))) {
                w->ended = true;
                return 0;
        }
        const char *type = event_type(ev->mask);
        const char *dir = dir_path(w, ev->wd);
        if (!type || !dir || !ev->len)
                return 0;
        cleanup_free char *path = NULL;
        if (asprintf(&path, "%s/%s", streq(dir, "/") ? "" : dir, ev->name) < 0)
                return -ENOMEM;
        bool is_dir = ev->mask & IN_ISDIR;
        int k = emit_entry(w, type, path, ev->name, is_dir);
        if (k < 0 || !is_dir || !w->recursive || !(ev->mask & (IN_CREATE | IN_MOVED_TO)))
                return k;
        FsRoot r = w->cred;
        FsCred c;
        r.root_fd = open(w->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (r.root_fd >= 0 && fscred_enter(&r, &c) == 0) {
                int fd = fsroot_open_path(&r, path, O_RDONLY | O_DIRECTORY, 0);
                fscred_leave(&c);
                if (fd >= 0) {
                        (void) add_tree(w, fd, path, 1, true);
                        (void) close(fd);
                }
        }
        closep(&r.root_fd);
        return 0;
}

static ssize_t watch_read(void *cls, int client_fd, char *buf, size_t max)
{
        FsWatch *w = cls;
        if (!w->started) {
                w->started = true;
                int k = emit_simple(w, "start");
                if (k < 0)
                        return k;
        }
        while (w->pending_off == w->pending_len) {
                w->pending_off = w->pending_len = 0;
                if (w->ended)
                        return 0;
                struct pollfd p[2] = {{.fd = w->ifd, .events = POLLIN},
                                      {.fd = client_fd, .events = POLLRDHUP}};
                int n = poll(p, client_fd >= 0 ? 2 : 1, KEEPALIVE_MS);
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n == 0) {
                        int k = emit_simple(w, "keepalive");
                        if (k < 0)
                                return k;
                        continue;
                }
                if (client_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
                        return -ECONNRESET;
                if (!(p[0].revents & POLLIN))
                        continue;
                ssize_t len = read(w->ifd, w->evbuf, sizeof(w->evbuf));
                if (len < 0)
                        continue;
                for (char *q = w->evbuf; q < w->evbuf + len;) {
                        const struct inotify_event *ev = (const struct inotify_event *) q;
                        int k = handle_event(w, ev);
                        if (k < 0)
                                return k;
                        q += sizeof(*ev) + ev->len;
                }
        }
        size_t n = w->pending_len - w->pending_off;
        if (n > max)
                n = max;
        memcpy(buf, w->pending + w->pending_off, n);
        w->pending_off += n;
        return (ssize_t) n;
}

const HttpStreamOps fs_watch_ops = {
        .read = watch_read,
        .destroy = watch_free,
};
