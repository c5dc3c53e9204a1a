#include "cnetlinkops.h"
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/act/gact.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/addr.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/route.h>
#include <netlink/route/tc.h>
#include <netlink/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cocoon_nl {
    struct nl_sock *sock;
};

cocoon_nl *cocoon_nl_open(int fd, int *err) {
    struct nl_sock *sock = nl_socket_alloc();
    if (!sock) {
        *err = -NLE_NOMEM;
        if (fd >= 0) close(fd);
        return NULL;
    }
    int rc = fd >= 0 ? nl_socket_set_fd(sock, NETLINK_ROUTE, fd) : nl_connect(sock, NETLINK_ROUTE);
    if (rc < 0) {
        nl_socket_free(sock);
        if (fd >= 0) close(fd);
        *err = rc;
        return NULL;
    }
    cocoon_nl *nl = calloc(1, sizeof(*nl));
    if (!nl) {
        nl_socket_free(sock);
        *err = -NLE_NOMEM;
        return NULL;
    }
    nl->sock = sock;
    return nl;
}

void cocoon_nl_close(cocoon_nl *nl) {
    if (!nl) return;
    nl_socket_free(nl->sock);  // closes the descriptor
    free(nl);
}

const char *cocoon_nl_error(int err) { return nl_geterror(err); }

int cocoon_nl_is_missing_support(int err) { return err == -NLE_OBJ_NOTFOUND; }

static void fill(struct rtnl_link *link, struct cocoon_link *out) {
    memset(out, 0, sizeof(*out));
    out->index = rtnl_link_get_ifindex(link);
    out->mtu = rtnl_link_get_mtu(link);
    const char *name = rtnl_link_get_name(link);
    if (name) snprintf(out->name, sizeof(out->name), "%s", name);
    struct nl_addr *addr = rtnl_link_get_addr(link);
    if (addr) nl_addr2str(addr, out->mac, sizeof(out->mac));
}

int cocoon_nl_link_by_name(cocoon_nl *nl, const char *name, struct cocoon_link *out) {
    struct rtnl_link *link = NULL;
    int rc = rtnl_link_get_kernel(nl->sock, 0, name, &link);
    if (rc < 0) return rc;
    fill(link, out);
    rtnl_link_put(link);
    return 0;
}

int cocoon_nl_links(cocoon_nl *nl, struct cocoon_link *out, int max) {
    struct nl_cache *cache = NULL;
    int rc = rtnl_link_alloc_cache(nl->sock, AF_UNSPEC, &cache);
    if (rc < 0) return rc;
    int n = 0;
    for (struct nl_object *o = nl_cache_get_first(cache); o && n < max; o = nl_cache_get_next(o)) {
        fill((struct rtnl_link *)o, &out[n++]);
    }
    nl_cache_free(cache);
    return n;
}

int cocoon_nl_link_change(cocoon_nl *nl, int index, unsigned mtu, const char *mac, int up, int ns_fd,
                          const char *new_name) {
    struct rtnl_link *orig = NULL;
    int rc = rtnl_link_get_kernel(nl->sock, index, NULL, &orig);
    if (rc < 0) return rc;
    struct rtnl_link *change = rtnl_link_alloc();
    struct nl_addr *addr = NULL;
    if (!change) {
        rc = -NLE_NOMEM;
        goto out;
    }
    if (mtu > 0) rtnl_link_set_mtu(change, mtu);
    if (mac) {
        rc = nl_addr_parse(mac, AF_LLC, &addr);
        if (rc < 0) goto out;
        rtnl_link_set_addr(change, addr);
    }
    if (up) rtnl_link_set_flags(change, IFF_UP);
    if (ns_fd >= 0) rtnl_link_set_ns_fd(change, ns_fd);
    if (new_name) rtnl_link_set_name(change, new_name);
    rc = rtnl_link_change(nl->sock, orig, change, 0);
out:
    if (addr) nl_addr_put(addr);
    if (change) rtnl_link_put(change);
    rtnl_link_put(orig);
    return rc;
}

int cocoon_nl_veth_add(cocoon_nl *nl, const char *name, const char *peer) {
    struct rtnl_link *link = rtnl_link_veth_alloc();
    if (!link) return -NLE_NOMEM;
    rtnl_link_set_name(link, name);
    struct rtnl_link *other = rtnl_link_veth_get_peer(link);
    if (other) {
        rtnl_link_set_name(other, peer);
        rtnl_link_put(other);
    }
    int rc = rtnl_link_add(nl->sock, link, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_link_put(link);
    return rc == -NLE_EXIST ? 0 : rc;
}

int cocoon_nl_link_delete(cocoon_nl *nl, const char *name) {
    struct rtnl_link *link = rtnl_link_alloc();
    if (!link) return -NLE_NOMEM;
    rtnl_link_set_name(link, name);
    int rc = rtnl_link_delete(nl->sock, link);
    rtnl_link_put(link);
    return rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV ? 0 : rc;
}

int cocoon_nl_addr_add(cocoon_nl *nl, int index, const char *cidr) {
    struct nl_addr *local = NULL;
    int rc = nl_addr_parse(cidr, AF_UNSPEC, &local);
    if (rc < 0) return rc;
    struct rtnl_addr *addr = rtnl_addr_alloc();
    if (!addr) {
        nl_addr_put(local);
        return -NLE_NOMEM;
    }
    rtnl_addr_set_ifindex(addr, index);
    rc = rtnl_addr_set_local(addr, local);
    if (rc == 0) {
        rtnl_addr_set_prefixlen(addr, (int)nl_addr_get_prefixlen(local));
        rc = rtnl_addr_add(nl->sock, addr, 0);
    }
    rtnl_addr_put(addr);
    nl_addr_put(local);
    return rc == -NLE_EXIST ? 0 : rc;
}

int cocoon_nl_route_add(cocoon_nl *nl, int index, const char *destination, const char *gateway) {
    struct nl_addr *dst = NULL, *gw = NULL;
    int rc = nl_addr_parse(destination, AF_UNSPEC, &dst);
    if (rc < 0) return rc;
    if (gateway && (rc = nl_addr_parse(gateway, nl_addr_get_family(dst), &gw)) < 0) {
        nl_addr_put(dst);
        return rc;
    }
    struct rtnl_route *route = rtnl_route_alloc();
    struct rtnl_nexthop *hop = rtnl_route_nh_alloc();
    if (!route || !hop) {
        rc = -NLE_NOMEM;
        if (hop) rtnl_route_nh_free(hop);
        goto out;
    }
    rtnl_route_set_family(route, (uint8_t)nl_addr_get_family(dst));
    rc = rtnl_route_set_dst(route, dst);
    if (rc < 0) {
        rtnl_route_nh_free(hop);
        goto out;
    }
    rtnl_route_set_table(route, RT_TABLE_MAIN);
    rtnl_route_set_protocol(route, RTPROT_BOOT);
    rtnl_route_set_scope(route, gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
    rtnl_route_nh_set_ifindex(hop, index);
    if (gw) rtnl_route_nh_set_gateway(hop, gw);
    rtnl_route_add_nexthop(route, hop);  // the route owns the hop from here
    rc = rtnl_route_add(nl->sock, route, 0);
    if (rc == -NLE_EXIST) rc = 0;
out:
    if (route) rtnl_route_put(route);
    if (gw) nl_addr_put(gw);
    nl_addr_put(dst);
    return rc;
}

int cocoon_nl_ingress_qdisc(cocoon_nl *nl, int index) {
    struct rtnl_qdisc *qdisc = rtnl_qdisc_alloc();
    if (!qdisc) return -NLE_NOMEM;
    struct rtnl_tc *tc = TC_CAST(qdisc);
    rtnl_tc_set_ifindex(tc, index);
    int rc = rtnl_tc_set_kind(tc, "ingress");
    if (rc == 0) {
        rtnl_tc_set_parent(tc, TC_H_INGRESS);
        rtnl_tc_set_handle(tc, TC_HANDLE(0xffff, 0));
        rc = rtnl_qdisc_add(nl->sock, qdisc, NLM_F_CREATE);
    }
    rtnl_qdisc_put(qdisc);
    return rc == -NLE_EXIST ? 0 : rc;
}

int cocoon_nl_ingress_filter(cocoon_nl *nl, int index, uint16_t priority, uint16_t protocol,
                             const struct cocoon_u32_key *keys, int key_count, int redirect_to) {
    struct rtnl_cls *filter = rtnl_cls_alloc();
    struct rtnl_act *action = rtnl_act_alloc();
    int rc = -NLE_NOMEM;
    if (!filter || !action) goto out;
    struct rtnl_tc *tc = TC_CAST(filter);
    rtnl_tc_set_ifindex(tc, index);
    if ((rc = rtnl_tc_set_kind(tc, "u32")) < 0) goto out;
    rtnl_tc_set_parent(tc, TC_HANDLE(0xffff, 0));
    rtnl_cls_set_prio(filter, priority);
    rtnl_cls_set_protocol(filter, protocol);
    // u32 needs a key: with none given, value 0 under mask 0 matches every packet.
    static const struct cocoon_u32_key any = {0, 0, 0};
    if (key_count == 0) {
        keys = &any;
        key_count = 1;
    }
    for (int i = 0; i < key_count; i++) {
        if ((rc = rtnl_u32_add_key_uint32(filter, keys[i].value, keys[i].mask, keys[i].offset, 0)) < 0) goto out;
    }
    rtnl_u32_set_cls_terminal(filter);
    if (redirect_to >= 0) {
        if ((rc = rtnl_tc_set_kind(TC_CAST(action), "mirred")) < 0) goto out;
        rtnl_mirred_set_action(action, TCA_EGRESS_REDIR);
        rtnl_mirred_set_policy(action, TC_ACT_STOLEN);
        rtnl_mirred_set_ifindex(action, (uint32_t)redirect_to);
    } else {
        if ((rc = rtnl_tc_set_kind(TC_CAST(action), "gact")) < 0) goto out;
        rtnl_gact_set_action(action, TC_ACT_SHOT);
    }
    if ((rc = rtnl_u32_add_action(filter, action)) < 0) goto out;
    rc = rtnl_cls_add(nl->sock, filter, NLM_F_CREATE);
out:
    if (action) rtnl_act_put(action);
    if (filter) rtnl_cls_put(filter);
    return rc;
}
