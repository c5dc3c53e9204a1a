#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/tc.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/classifier.h>
#include <netlink/route/action.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/act/gact.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <linux/tc_act/tc_mirred.h>

// libnl's tc objects share a base type that C reaches with the TC_CAST macro; Swift cannot use macros.
static inline struct rtnl_tc *cocoon_qdisc_tc(struct rtnl_qdisc *q) { return (struct rtnl_tc *)q; }
static inline struct rtnl_tc *cocoon_cls_tc(struct rtnl_cls *c) { return (struct rtnl_tc *)c; }
static inline struct rtnl_tc *cocoon_act_tc(struct rtnl_act *a) { return (struct rtnl_tc *)a; }
static inline uint32_t cocoon_tc_handle(uint32_t major, uint32_t minor) { return TC_HANDLE(major, minor); }
