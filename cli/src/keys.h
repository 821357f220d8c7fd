/* `sandpit keys create|list|revoke`: the gateway's API keys (docs/auth.md). */
#pragma once

/* argv[0] is "keys". Answers the process's exit status; errors are one line
 * on stderr. */
int cli_keys_main(int argc, char **argv);

/* The key file of the agent's state dir. */
#define CLI_KEYS_DEFAULT_STATE_DIR "/run/sandpit"
#define CLI_KEYS_FILE_NAME         "gateway-keys"
#define CLI_KEYS_SECRET_NAME       "sandpit-api-keys"
#define CLI_KEYS_SECRET_NAMESPACE  "sandpit-system"

/* Writes of the Secret lost to another writer, tried again up to this many times. */
#define CLI_KEYS_WRITE_ATTEMPTS 20
