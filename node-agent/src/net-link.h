/* Kernel mechanics of sandbox networking: network namespaces pinned by a bind
 * mount, the veth pair (libnl: links, addresses, routes, link state), work done
 * inside a namespace from a short-lived thread. */
#pragma once

#include <stdint.h>

/* Creates a new network namespace and pins it at path (a bind mount of the
 * creating thread's /proc/<tid>/ns/net on a new file). */
int netns_create(const char *path);
/* Unmounts and unlinks; a path that is not there (any more) is success. */
int netns_remove(const char *path);
/* A socket(domain, type) created inside the namespace pinned at path; it stays
 * in that namespace whichever thread uses it. */
int netns_socket(const char *path, int domain, int type);

/* Creates the veth pair: host_if in the caller's namespace with gw, peer to
 * peer_ip; "eth0" in the namespace at netns_path with ip, peer gw; both up,
 * loopback up, default route via gw. */
int net_link_setup(const char *netns_path, const char *host_if, uint32_t ip, uint32_t gw);
/* Deletes a link of the caller's namespace; a missing one is success. */
int net_link_del(const char *ifname);
/* Names of the caller's namespace's links that start with prefix. */
int net_link_list(const char *prefix, char ***ret);
