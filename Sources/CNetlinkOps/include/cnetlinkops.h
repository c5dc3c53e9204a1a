#ifndef COCOON_CNETLINKOPS_H
#define COCOON_CNETLINKOPS_H

#include <stdint.h>

// Route netlink through libnl-3 behind plain C functions: libnl's headers pull in Linux uapi headers
// that no Clang module owns, so they stay inside the .c file and never reach a Swift module.
// Every function returns 0 or a negative libnl error (see cocoon_nl_error).

typedef struct cocoon_nl cocoon_nl;

struct cocoon_link {
    int index;
    unsigned mtu;
    char name[16];
    char mac[24];
};

struct cocoon_u32_key {
    uint32_t value;
    uint32_t mask;
    int32_t offset;
};

/// A socket in the caller's namespace (fd < 0) or adopting `fd`, an unbound NETLINK_ROUTE socket
/// made elsewhere (e.g. in a pod's namespace). NULL on failure, with *err set.
cocoon_nl *cocoon_nl_open(int fd, int *err);
void cocoon_nl_close(cocoon_nl *nl);
/// libnl's text for an error.
const char *cocoon_nl_error(int err);
/// 1 when `err` says the kernel lacks a tc module (an action or classifier).
int cocoon_nl_is_missing_support(int err);

int cocoon_nl_link_by_name(cocoon_nl *nl, const char *name, struct cocoon_link *out);
/// Up to `max` links into `out`; the count, or a negative error.
int cocoon_nl_links(cocoon_nl *nl, struct cocoon_link *out, int max);
/// One change of link `index`: mtu > 0, mac, up, ns_fd >= 0 (move), new_name; NULL/0/-1 leave a part.
int cocoon_nl_link_change(cocoon_nl *nl, int index, unsigned mtu, const char *mac, int up, int ns_fd,
                          const char *new_name);
int cocoon_nl_veth_add(cocoon_nl *nl, const char *name, const char *peer);
/// Deleting a link that is not there succeeds.
int cocoon_nl_link_delete(cocoon_nl *nl, const char *name);
/// An address already there succeeds.
int cocoon_nl_addr_add(cocoon_nl *nl, int index, const char *cidr);
/// A route already there succeeds; gateway NULL: a link route.
int cocoon_nl_route_add(cocoon_nl *nl, int index, const char *destination, const char *gateway);
/// An ingress qdisc already there succeeds.
int cocoon_nl_ingress_qdisc(cocoon_nl *nl, int index);
/// A u32 filter on `index`'s ingress: packets of `protocol` matching every key are redirected out of
/// `redirect_to`, or dropped (redirect_to < 0).
int cocoon_nl_ingress_filter(cocoon_nl *nl, int index, uint16_t priority, uint16_t protocol,
                             const struct cocoon_u32_key *keys, int key_count, int redirect_to);

#endif
