"""Links, addresses, routes, neighbours and tunnels through rtnetlink (pyroute2);
IP sets through netfilter netlink (our own client).

The only package that imports pyroute2, and it does so inside functions:
importing it costs nothing, so commands that never touch the kernel (and
code that only needs the exception classes) stay fast.

One module per kernel object, all behind one ``Session`` (a socket serving
one network namespace):

- ``errors``: errno values as named NetlinkError subclasses;
- ``netns``: entering another namespace with this thread (``entered_netns``);
- ``links``: interfaces and veth pairs;
- ``routing``: addresses, main-table routes, neighbour entries;
- ``tunnels``: VXLAN and IPIP devices, the VXLAN forwarding database;
- ``monitor``: the agent's cheap views (link events, names, up flags);
- ``ipset``: IP sets (``IpsetSocket``), spoken directly (pyroute2's ipset
  support sends one message per member); only the agent uses it, so it is
  imported from its module, not exported here (the CLI does not load it);
- ``session``: ``Session`` and one-shot helpers.

Every entry point takes ``netns``: None for the caller's own network
namespace, or a path such as ``/proc/<pid>/ns/net``. Callers use the names
exported here.
"""
from calicoctl.host.netlink.errors import (AlreadyPresent, LinkNotFound, NamespaceNotFound, NetlinkError,
                                           NetlinkPermissionDenied, NotPresent, translate_error)
from calicoctl.host.netlink.links import LinkInfo
from calicoctl.host.netlink.monitor import InterfaceFlags, LinkMonitor, list_interface_indexes
from calicoctl.host.netlink.netns import entered_netns, open_netns
from calicoctl.host.netlink.routing import RTPROT_BOOT, AddressInfo, RouteInfo
from calicoctl.host.netlink.session import Session, delete_link, find_link
from calicoctl.host.netlink.tunnels import VxlanInfo

__all__ = [
    "AddressInfo", "AlreadyPresent", "InterfaceFlags", "LinkInfo", "LinkMonitor", "LinkNotFound",
    "NamespaceNotFound", "NetlinkError", "NetlinkPermissionDenied", "NotPresent", "RTPROT_BOOT",
    "RouteInfo", "Session", "VxlanInfo", "delete_link", "entered_netns", "find_link",
    "list_interface_indexes", "open_netns", "translate_error",
]
