// libnl-3 and libnl-route-3, for CNetlinkOps' C file only (no Swift code imports this module: its
// headers pull in Linux uapi headers that other modules would then fail to find).
#include <netlink/netlink.h>
