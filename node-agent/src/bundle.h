/* The OCI bundle writer: the runc config.json that runs one sandbox, with
 * sandpit-init as its process and the security defaults of docs/security.md
 * (runtime-spec 1.0.2, as runc 1.1 accepts it). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

typedef struct {
        const char *id;          /* container id; also the hostname */
        const char *rootfs;      /* absolute host path of the merged overlay root (writable) */
        const char *control_dir; /* host dir, bind-mounted read-only at IP_CONTROL_DIR */
        const char
                *init_binary; /* host path of the static sandpit-init, read-only at IP_INIT_PATH */
        const char *cgroups_path; /* linux.cgroupsPath, e.g. "/sandpit/<id>" (already created) */
        char **ro_binds;          /* NULL-terminated host paths bound read-only at the same path;
                                     may be NULL */
        const char *resolv_conf;  /* host file bound read-only at /etc/resolv.conf; NULL = none */
        const char *netns_path;   /* network namespace to join; NULL = a new empty one */
        const char *kernels_dir;  /* host dir bound read-only at CODE_KERNELS_MOUNT; NULL = none */
        const char *code_dir;     /* host dir bound read-only at CODE_SOCKETS_MOUNT; NULL = none */
        const char *userns_path;  /* with userns_size: the user namespace to join */
        uint32_t userns_host_id;  /* its mapping: 0..size-1 inside */
        uint32_t userns_size;     /* mapped onto userns_host_id..; 0 = no user namespace */
        bool channel;             /* init gets --channel: its stdin is the agent's socket pair */
} BundleSpec;

/* Builds the config document into *ret (the caller puts it). -EINVAL on a bad
 * spec (missing field, relative path, id that is not a valid hostname), -ENOMEM.
 *
 * Every document shares one seccomp object built on first use. json-c's reference
 * counts are not atomic (Debian builds it without threading), so free the
 * documents on the thread that calls the bundle functions, i.e. the agent's loop;
 * bundle_write() itself is safe from any thread. */
int bundle_config_new(const BundleSpec *spec, json_object **ret);

/* Writes bundle_dir/config.json, mode 0600, atomically (temporary file in
 * bundle_dir, then rename). bundle_dir must exist. Returns 0 or a negative errno. */
int bundle_write(const char *bundle_dir, const BundleSpec *spec);
/* The RLIMIT_NOFILE a sandbox gets: 65536, or the agent's hard limit if lower. */
int64_t bundle_nofile_limit(void);
