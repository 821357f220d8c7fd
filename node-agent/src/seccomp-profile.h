/* The seccomp profile every sandbox runs under, as an OCI linux.seccomp object.
 * seccomp-profile.c says where the list comes from and how it differs from
 * Docker's default. */
#pragma once

#include <json-c/json.h>

/* Builds a new linux.seccomp object (refcount 1, owned by the caller).
 * Returns 0 or -ENOMEM. */
int seccomp_profile_new(json_object **ret);
