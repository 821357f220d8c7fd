/* Unit tests for the orphan resync's decisions (which agent sandboxes are the
 * operator's, which objects still claim them) and the deadline spec.timeout
 * asks for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../operator/src/operator.h"
#include "test-support.h"

#define UID "0b6f9d4e-2c1a-4c8e-9f3e-2d5f6a7b8c9d"

static void test_marks(void **state)
{
        (void) state;
        const char *ns = NULL, *name = NULL;
        json_object *ok = parse("{\"id\":\"sbx-" UID "\",\"labels\":{\"sandpit.dev/managed-by\":"
                                "\"sandpit-operator\",\"sandpit.dev/namespace\":\"default\","
                                "\"sandpit.dev/name\":\"box\",\"team\":\"ml\"}}");
        assert_true(orphan_resync_marked(ok, &ns, &name));
        assert_string_equal(ns, "default");
        assert_string_equal(name, "box");
        json_object_put(ok);

        static const char *const not_ours[] = {
                /* no label */
                "{\"id\":\"sbx-" UID "\",\"labels\":{}}",
                /* the label, another id shape */
                "{\"id\":\"mine-1\",\"labels\":{\"sandpit.dev/managed-by\":\"sandpit-operator\","
                "\"sandpit.dev/namespace\":\"d\",\"sandpit.dev/name\":\"n\"}}",
                /* another manager */
                "{\"id\":\"sbx-" UID "\",\"labels\":{\"sandpit.dev/managed-by\":\"someone\","
                "\"sandpit.dev/namespace\":\"d\",\"sandpit.dev/name\":\"n\"}}",
                /* no object named */
                "{\"id\":\"sbx-" UID "\",\"labels\":{\"sandpit.dev/managed-by\":"
                "\"sandpit-operator\",\"sandpit.dev/namespace\":\"d\"}}",
                "{\"id\":\"sbx-" UID "\",\"labels\":{\"sandpit.dev/managed-by\":"
                "\"sandpit-operator\",\"sandpit.dev/namespace\":\"\",\"sandpit.dev/name\":\"n\"}}",
                /* no id */
                "{\"labels\":{\"sandpit.dev/managed-by\":\"sandpit-operator\","
                "\"sandpit.dev/namespace\":\"d\",\"sandpit.dev/name\":\"n\"}}",
        };
        for (size_t i = 0; i < sizeof(not_ours) / sizeof(not_ours[0]); i++) {
                json_object *o = parse(not_ours[i]);
                assert_false(orphan_resync_marked(o, &ns, &name));
                json_object_put(o);
        }
}

static json_object *sandbox_obj(const char *uid, const char *phase, const char *node,
                                const char *id)
{
        json_object *o = json_object_new_object();
        json_object *meta = json_object_new_object();
        json_object_object_add(o, "metadata", meta);
        json_object_object_add(meta, "uid", json_object_new_string(uid));
        json_object_object_add(meta, "name", json_object_new_string("box"));
        json_object_object_add(meta, "namespace", json_object_new_string("default"));
        json_object *st = json_object_new_object();
        json_object_object_add(o, "status", st);
        if (phase)
                json_object_object_add(st, "phase", json_object_new_string(phase));
        if (node)
                json_object_object_add(st, "nodeName", json_object_new_string(node));
        if (id)
                json_object_object_add(st, "sandboxID", json_object_new_string(id));
        return o;
}

static void test_claims(void **state)
{
        (void) state;
        const char *id = "sbx-" UID;
        static const struct {
                const char *uid, *phase, *node, *id;
                bool claims;
        } cases[] = {
                {UID, "Running", "n1", "sbx-" UID, true},
                {UID, "Paused", "n1", "sbx-" UID, true},
                {UID, "Pending", "n1", "sbx-" UID, true}, /* placed, being created */
                {UID, NULL, "n1", "sbx-" UID, true},
                {UID, "Failed", "n1", "sbx-" UID, false},  /* final: placement released */
                {UID, "Expired", "n1", "sbx-" UID, false}, /* final */
                {UID, "Running", "n2", "sbx-" UID, false}, /* on another node */
                {UID, "Running", "n1", "sbx-other", false},
                {UID, "Pending", NULL, NULL, false},                 /* not placed */
                {"another-uid", "Running", "n1", "sbx-" UID, false}, /* a new object, same name */
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_object *o =
                        sandbox_obj(cases[i].uid, cases[i].phase, cases[i].node, cases[i].id);
                assert_int_equal(orphan_resync_claims(o, "n1", id), cases[i].claims);
                json_object_put(o);
        }
}

static void test_wanted_deadline(void **state)
{
        (void) state;
        json_object *sbx = parse("{\"spec\":{\"timeout\":\"10m\"}}");
        json_object *sb = parse("{\"created_at\":\"2026-11-22T12:00:00.500000Z\"}");
        uint64_t created = 0;
        assert_int_equal(parse_rfc3339_us("2026-11-22T12:00:00.500000Z", &created), 0);
        assert_true(sandbox_wanted_deadline_us(sbx, sb) == created + 600u * 1000000u);
        json_object_put(sbx);
        /* the CRD default when absent */
        sbx = parse("{\"spec\":{}}");
        assert_true(sandbox_wanted_deadline_us(sbx, sb) == created + 300u * 1000000u);
        json_object_put(sbx);
        /* unreadable: 0, nothing moves */
        sbx = parse("{\"spec\":{\"timeout\":\"soon\"}}");
        assert_true(sandbox_wanted_deadline_us(sbx, sb) == 0);
        json_object_put(sbx);
        json_object_put(sb);
        sbx = parse("{\"spec\":{\"timeout\":\"10m\"}}");
        sb = parse("{}");
        assert_true(sandbox_wanted_deadline_us(sbx, sb) == 0);
        json_object_put(sbx);
        json_object_put(sb);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_marks),
                cmocka_unit_test(test_claims),
                cmocka_unit_test(test_wanted_deadline),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
