/* Unit tests for the host id range table (userns.h) and the user namespace in
 * the OCI config (bundle.c). */
#include <errno.h>
#include <linux/nsfs.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "bundle.h"
#include "sandpit/macro.h"
#include "sandpit/util.h"
#include "userns.h"

#define SIZE 65536u

static void test_bad_tables(void **state)
{
        (void) state;
        UsernsAlloc *a = NULL;
        assert_int_equal(userns_alloc_new(65536, 0, &a), -EINVAL);
        /* the last range would reach (uid_t) -1 */
        assert_int_equal(userns_alloc_new(UINT32_MAX - SIZE, SIZE, &a), -EINVAL);
        assert_null(a);
        assert_int_equal(userns_alloc_new(UINT32_MAX - 1 - SIZE, SIZE, &a), 0);
        assert_int_equal(userns_alloc_count(a), 1);
        userns_alloc_free(a);
        assert_int_equal(userns_alloc_new(USERNS_DEFAULT_BASE, SIZE, &a), 0);
        assert_int_equal(userns_alloc_count(a), USERNS_MAX_RANGES);
        userns_alloc_free(a);
        userns_alloc_free(NULL);
}

static void test_take_release(void **state)
{
        (void) state;
        UsernsAlloc *a = NULL;
        uint32_t base = UINT32_MAX - 1 - 3 * SIZE, h[3], x = 0;
        assert_int_equal(userns_alloc_new(base, SIZE, &a), 0);
        assert_int_equal(userns_alloc_count(a), 3);
        for (int i = 0; i < 3; i++)
                assert_int_equal(userns_alloc_take(a, &h[i]), 0);
        /* disjoint, aligned, inside the table */
        assert_int_equal(h[0], base);
        assert_int_equal(h[1], base + SIZE);
        assert_int_equal(h[2], base + 2 * SIZE);
        assert_int_equal(userns_alloc_used(a), 3);
        assert_int_equal(userns_alloc_take(a, &x), -ENOSPC);
        assert_int_equal(userns_alloc_release(a, h[1]), 0);
        assert_int_equal(userns_alloc_release(a, h[1]), -ENOENT); /* not twice */
        assert_int_equal(userns_alloc_release(a, h[1] + 1), -EINVAL);
        assert_int_equal(userns_alloc_release(a, base - SIZE), -EINVAL);
        assert_int_equal(userns_alloc_used(a), 2);
        assert_int_equal(userns_alloc_take(a, &x), 0);
        assert_int_equal(x, h[1]);
        userns_alloc_free(a);
}

/* A freed range goes to the back of the queue. */
static void test_next_fit(void **state)
{
        (void) state;
        UsernsAlloc *a = NULL;
        uint32_t base = UINT32_MAX - 1 - 3 * SIZE, h0 = 0, h1 = 0, x = 0;
        assert_int_equal(userns_alloc_new(base, SIZE, &a), 0);
        assert_int_equal(userns_alloc_take(a, &h0), 0);
        assert_int_equal(userns_alloc_release(a, h0), 0);
        assert_int_equal(userns_alloc_take(a, &h1), 0);
        assert_int_not_equal(h1, h0);
        assert_int_equal(userns_alloc_take(a, &x), 0);
        assert_int_equal(x, base + 2 * SIZE);
        assert_int_equal(userns_alloc_take(a, &x), 0);
        assert_int_equal(x, h0); /* wrapped around */
        userns_alloc_free(a);
}

/* An adopted sandbox's range (after a restart) is never handed out. */
static void test_mark(void **state)
{
        (void) state;
        UsernsAlloc *a = NULL;
        uint32_t base = UINT32_MAX - 1 - 2 * SIZE, x = 0;
        assert_int_equal(userns_alloc_new(base, SIZE, &a), 0);
        assert_int_equal(userns_alloc_mark(a, base), 0);
        assert_int_equal(userns_alloc_mark(a, base), -EEXIST);
        assert_int_equal(userns_alloc_mark(a, base + 5), -EINVAL);
        assert_int_equal(userns_alloc_mark(a, 65536), -EINVAL);
        assert_int_equal(userns_alloc_take(a, &x), 0);
        assert_int_equal(x, base + SIZE);
        assert_int_equal(userns_alloc_take(a, &x), -ENOSPC);
        userns_alloc_free(a);
}

static json_object *get(json_object *o, const char *key)
{
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("no %s", key);
        return v;
}

static void test_bundle_userns(void **state)
{
        (void) state;
        BundleSpec spec = {.id = "sbx",
                           .rootfs = "/run/sandpit/sandboxes/sbx/rootfs",
                           .control_dir = "/run/sandpit/sandboxes/sbx/ctl",
                           .init_binary = "/usr/libexec/sandpit-init",
                           .cgroups_path = "/sandpit/sbx",
                           .userns_path = "/run/sandpit/sandboxes/sbx/userns",
                           .userns_host_id = 1u << 20,
                           .userns_size = SIZE};
        json_object *config = NULL;
        assert_int_equal(bundle_config_new(&spec, &config), 0);
        json_object *linux_ = get(config, "linux");
        json_object *ns = get(linux_, "namespaces");
        bool user = false;
        for (size_t i = 0; i < json_object_array_length(ns); i++) {
                json_object *n = json_object_array_get_idx(ns, i);
                if (streq(json_object_get_string(get(n, "type")), "user")) {
                        user = true;
                        assert_string_equal(json_object_get_string(get(n, "path")),
                                            spec.userns_path);
                }
        }
        assert_true(user);
        static const char *const maps[] = {"uidMappings", "gidMappings"};
        for (size_t i = 0; i < ARRAY_SIZE(maps); i++) {
                json_object *m = get(linux_, maps[i]);
                assert_int_equal(json_object_array_length(m), 1);
                m = json_object_array_get_idx(m, 0);
                assert_int_equal(json_object_get_int64(get(m, "containerID")), 0);
                assert_int_equal(json_object_get_int64(get(m, "hostID")), 1u << 20);
                assert_int_equal(json_object_get_int64(get(m, "size")), SIZE);
        }
        /* runc cannot set them in a namespace another user made (bundle.c) */
        assert_false(json_object_object_get_ex(get(config, "process"), "rlimits", NULL));
        json_object_put(config);

        spec.userns_path = "relative";
        assert_int_equal(bundle_config_new(&spec, &config), -EINVAL);
        spec.userns_path = "/x";
        spec.userns_host_id = UINT32_MAX - SIZE;
        assert_int_equal(bundle_config_new(&spec, &config), -EINVAL);
}

/* Namespaces made ahead (userns_spares_*): each on a range of the table, made
 * by the range's first id; the ones left are released at the stop. Needs root
 * and a kernel that lets an unprivileged id make a user namespace. */
static void test_spares(void **state)
{
        (void) state;
        if (geteuid() != 0 || userns_check(USERNS_DEFAULT_BASE) < 0)
                skip();
        UsernsAlloc *a = NULL;
        UsernsSpares *s = NULL;
        assert_int_equal(userns_alloc_new(USERNS_DEFAULT_BASE, SIZE, &a), 0);
        assert_int_equal(userns_spares_start(a, 0, &s), -EINVAL);
        assert_int_equal(userns_spares_start(a, 9, &s), -EINVAL);
        assert_int_equal(userns_spares_start(a, 2, &s), 0);
        uint32_t host_id = 0;
        int fd = -1, r;
        /* The thread makes them in the background: wait until one is ready. */
        for (int i = 0; (r = userns_spares_take(s, &host_id, &fd)) == -EAGAIN && i < 10000; i++)
                (void) nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        assert_int_equal(r, 0);
        userns_spares_refill(s);
        assert_int_equal(host_id, USERNS_DEFAULT_BASE); /* the table's first range */
        uid_t owner = 0;
        assert_int_equal(ioctl(fd, NS_GET_OWNER_UID, &owner), 0);
        assert_int_equal(owner, host_id);
        /* Taken in the table: the allocator never hands it out again. */
        assert_int_equal(userns_alloc_mark(a, host_id), -EEXIST);
        /* A dropped fd is closed by the thread: the pipe's reader sees its end. */
        int p[2];
        assert_int_equal(pipe(p), 0);
        userns_spares_drop(s, p[1]);
        char c;
        assert_int_equal(read(p[0], &c, 1), 0);
        (void) close(p[0]);
        userns_spares_stop(s);
        /* Ours stays taken; the ready ones were released. */
        assert_int_equal(userns_alloc_used(a), 1);
        assert_int_equal(userns_alloc_release(a, host_id), 0);
        (void) close(fd);
        userns_alloc_free(a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bad_tables),    cmocka_unit_test(test_take_release),
                cmocka_unit_test(test_next_fit),      cmocka_unit_test(test_mark),
                cmocka_unit_test(test_bundle_userns), cmocka_unit_test(test_spares),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
