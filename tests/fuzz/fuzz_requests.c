/* libFuzzer harness for the agent's request parsers: the bytes are a request
 * body; when they parse as a JSON object they go through the create and the
 * exec request validation, as the API would pass them. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "exec.h"
#include "sandbox.h"
#include "sandpit/quantity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_tokener *tok = json_tokener_new();
        json_object *o = json_tokener_parse_ex(tok, (const char *) data, (int) size);
        json_tokener_free(tok);
        if (o && json_object_is_type(o, json_type_object)) {
                char err[512];
                SandboxSpec spec;
                if (sandbox_spec_from_json(o, &spec, err, sizeof(err)) == 0)
                        sandbox_spec_done(&spec);
                char *env[] = {"A=1", NULL};
                SandboxExecInfo info = {
                        .socket_path = "/nonexistent", .env = env, .user = "user", .id = "fuzz"};
                ExecRequest req;
                if (exec_request_from_json(o, &info, &req, err, sizeof(err)) == 0)
                        exec_request_done(&req);
        }
        json_object_put(o);
        /* The quantity parsers also take raw strings. */
        char s[64];
        size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
        memcpy(s, data, n);
        s[n] = 0;
        uint64_t bytes;
        double cpu;
        (void) quantity_parse_bytes(s, &bytes);
        (void) quantity_parse_cpu(s, &cpu);
        return 0;
}
