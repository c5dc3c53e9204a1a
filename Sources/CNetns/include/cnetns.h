#ifndef COCOON_CNETNS_H
#define COCOON_CNETNS_H

// Network namespaces for pods. setns() changes only the calling thread, so each function that works
// inside a namespace does it on a short-lived thread of its own and never on a caller's thread.

/// Creates a network namespace and keeps it alive by bind-mounting it on `path` (an existing empty
/// file), as `ip netns add` does. 0 or an errno.
int cocoon_netns_create(const char *path);

/// A route-netlink socket created inside the namespace open at `netns_fd`: it speaks to that
/// namespace wherever it is used. The descriptor, or -errno.
int cocoon_netlink_in_netns(int netns_fd);

/// Creates the persistent tap `name` in the caller's namespace (the host's, for a hypervisor that
/// opens taps by name); 0 or an errno.
int cocoon_host_tap_create(const char *name);

/// 1 when `path` is a namespace file (nsfs), 0 otherwise.
int cocoon_is_nsfs(const char *path);

/// Opens /dev/net/tun inside the namespace at `netns_fd` and makes it the tap `name` there
/// (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR): the tap lives while a descriptor of it is open. The
/// descriptor, or -errno.
int cocoon_tap_in_netns(int netns_fd, const char *name);

#endif
