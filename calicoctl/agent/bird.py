"""BGP for the node: a BIRD 2 configuration rendered from etcd, and BIRD itself.

Two halves, kept apart:

- Pure: ``calculate_bird_inputs`` reads the etcd leaves this host cares about
  (the ``/calico/bgp/v1`` tree, the IP pools, the interface prefix) into a
  ``BirdInputs``; ``render_bird_config`` turns that into BIRD 2's config
  text. Same inputs, same text, so "did anything change?" is a string
  comparison.
- Effects: ``BirdManager`` (an agent Component) writes ``<run-dir>/bird.cfg``
  atomically, starts ``bird -f`` as its child, asks it to re-read the file
  (``birdc configure``) when the text changes, restarts it when it dies and
  stops it when the agent exits.

What the configuration does (reference.md §4, in BIRD 2 terms; one daemon
serves IPv4 and IPv6):

- ``kernel`` protocols ``learn`` the device routes the agent installs for
  local workloads (``<ip> dev cali...``) and install the routes learned
  from BGP peers. Routes inside pools whose traffic the agent tunnels itself
  (VXLAN pools, and IPIP pools where the kernel has IPIP) are never
  installed from BGP: the tunnel components own those.
- ``direct`` gives BIRD the host's connected networks (not the workload
  veths), which is what resolves a peer's next hop on the shared LAN.
- Peers: the node-to-node mesh (every other host's ``ip_addr_v4``/``_v6``)
  when ``node_mesh`` is on, the global peers and this node's own peers,
  named ``Mesh_``/``Global_``/``Node_`` + the address with ``.``/``:`` as
  ``_`` -- the names ``calicoctl status`` reads. A peer address listed more
  than once gets one session: node peers win over global ones, global over
  the mesh. IPv6 sessions exist only when this host has an IPv6 address.
- To peers we export only local workload routes (learned on a ``cali*``
  device) and routes learned by BGP, and only inside the pools. Routes the
  tunnel components install (on their own devices) are never re-exported:
  on another host they would shadow that host's own workload routes.
- ``next hop self`` with the session's local address: peers forward to the
  host that owns the workload. Every session is ``multihop`` with recursive
  next hops, so a peer off the LAN (a route reflector, a ToR) works too.
"""
import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Optional, Tuple

from calicoctl import model, validate
from calicoctl.agent.component import Component
from calicoctl.datastore import paths
from calicoctl.errors import ValidationError

LOG = logging.getLogger(__name__)

DEFAULT_AS = 64511
DEFAULT_INTERFACE_PREFIX = "cali"
# Devices whose addresses/routes BIRD must not treat as the host's networks.
TUNNEL_DEVICES = ("vxlan.calico", "tunl0")

PEER_KINDS = ("Node", "Global", "Mesh")     # precedence when one address is listed twice

# The keys a BIRD config depends on; everything else in the stream is ignored.
RELEVANT_PREFIXES = (paths.BGP_V1 + "/", paths.IPAM_DIR + "/v4/pool/", paths.IPAM_DIR + "/v6/pool/",
                     paths.global_config("InterfacePrefix"))

# How often a dead BIRD is restarted at most (seconds between attempts).
RESTART_INTERVAL = 1.0
STOP_TIMEOUT = 5.0


# -- pure: inputs ----------------------------------------------------------------

@dataclass(frozen=True)
class BgpPeerSpec:
    """One BGP session to render."""
    kind: str           # "Mesh" | "Global" | "Node"
    ip: str
    as_num: int

    @property
    def version(self):
        return 6 if ":" in self.ip else 4

    @property
    def protocol_name(self):
        return "%s_%s" % (self.kind, self.ip.replace(".", "_").replace(":", "_"))


@dataclass(frozen=True)
class BirdInputs:
    """Everything the BIRD config of one host depends on."""
    hostname: str
    router_id: str                       # the host's IPv4 address
    ipv6: Optional[str]
    local_as: int
    peers: Tuple[BgpPeerSpec, ...]
    pools_v4: Tuple[str, ...]            # CIDRs exported to peers
    pools_v6: Tuple[str, ...]
    tunnelled_v4: Tuple[str, ...] = ()   # pool CIDRs BGP must not install into the kernel
    tunnelled_v6: Tuple[str, ...] = ()
    interface_prefix: str = DEFAULT_INTERFACE_PREFIX


def is_relevant_key(key):
    """True if a change to ``key`` can change the BIRD config (pure)."""
    return key.startswith(RELEVANT_PREFIXES)


def _parse_ip(value, version):
    if not value:
        return None
    try:
        return str(validate.parse_ip(value.strip(), version))
    except (ValidationError, AttributeError):
        return None


def _parse_as(value):
    if value in (None, ""):
        return None
    try:
        return validate.parse_as_number(str(value).strip())
    except ValidationError:
        return None


def _parse_mesh(value):
    """node_mesh JSON -> bool; absent or unreadable means on (as calicoctl shows it)."""
    if not value:
        return True
    try:
        data = json.loads(value)
        return bool(data.get("enabled", True)) if isinstance(data, dict) else True
    except ValueError:
        return True


def parse_pools(items):
    """The valid IP pools among ``items`` (key -> value), sorted by CIDR (pure)."""
    pools = []
    for key, value in items.items():
        if value is None or paths.parse_pool_key(key) is None:
            continue
        try:
            pools.append(model.IPPool.from_json(value))
        except ValidationError:
            continue
    return sorted(pools, key=lambda pool: (pool.version, pool.cidr))


def calculate_bird_inputs(items, hostname, ipip_tunnelled=False):
    """Read BirdInputs for ``hostname`` out of etcd leaves (pure).

    :param items: key -> value of (at least) every relevant leaf.
    :param ipip_tunnelled: True when the agent routes IPIP pools over tunl0
        itself (the kernel has IPIP); otherwise BGP installs their routes
        like any other pool's.
    :return: BirdInputs, or None while this host has no IPv4 address recorded.
    """
    hosts = {}
    global_peers, node_peers = [], []
    for key, value in items.items():
        if value is None:
            continue
        host_field = paths.parse_bgp_host_key(key)
        if host_field:
            hosts.setdefault(host_field[0], {})[host_field[1]] = value
            continue
        peer_key = paths.parse_bgp_peer_key(key)
        if peer_key:
            peer_host, version, _ = peer_key
            try:
                peer = model.BGPPeer.from_json(value)
            except ValidationError:
                continue
            if peer.version != version:
                continue
            if peer_host is None:
                global_peers.append(peer)
            elif peer_host == hostname:
                node_peers.append(peer)

    own = hosts.get(hostname, {})
    router_id = _parse_ip(own.get("ip_addr_v4"), 4)
    if router_id is None:
        return None
    own_v6 = _parse_ip(own.get("ip_addr_v6"), 6)
    default_as = _parse_as(items.get(paths.BGP_GLOBAL_AS)) or DEFAULT_AS
    local_as = _parse_as(own.get("as_num")) or default_as

    specs = {}    # ip -> BgpPeerSpec, first kind in PEER_KINDS order wins

    def offer(kind, ip, as_num):
        current = specs.get(ip)
        if current is None or PEER_KINDS.index(kind) < PEER_KINDS.index(current.kind):
            specs[ip] = BgpPeerSpec(kind=kind, ip=ip, as_num=as_num)

    if _parse_mesh(items.get(paths.BGP_NODE_MESH)):
        for other, fields in hosts.items():
            if other == hostname:
                continue
            other_as = _parse_as(fields.get("as_num")) or default_as
            for version, own_ip in ((4, router_id), (6, own_v6)):
                ip = _parse_ip(fields.get("ip_addr_v%d" % version), version)
                if ip and ip != own_ip:
                    offer("Mesh", ip, other_as)
    for peer in global_peers:
        offer("Global", peer.ip, peer.as_num)
    for peer in node_peers:
        offer("Node", peer.ip, peer.as_num)

    # No IPv6 address here: no IPv6 session can have a source address.
    peers = [spec for spec in specs.values() if spec.version == 4 or own_v6]
    peers.sort(key=lambda spec: (spec.version, PEER_KINDS.index(spec.kind), _ip_sort_key(spec.ip)))

    pools = parse_pools(items)
    prefix = items.get(paths.global_config("InterfacePrefix")) or DEFAULT_INTERFACE_PREFIX
    try:
        validate.parse_name(prefix, "interface prefix")
    except ValidationError:
        prefix = DEFAULT_INTERFACE_PREFIX

    def tunnelled(pool):
        return pool.vxlan or (ipip_tunnelled and bool(pool.ipip))

    return BirdInputs(
        hostname=hostname, router_id=router_id, ipv6=own_v6, local_as=local_as,
        peers=tuple(peers),
        pools_v4=tuple(p.cidr for p in pools if p.version == 4),
        pools_v6=tuple(p.cidr for p in pools if p.version == 6),
        tunnelled_v4=tuple(p.cidr for p in pools if p.version == 4 and tunnelled(p)),
        tunnelled_v6=tuple(p.cidr for p in pools if p.version == 6 and tunnelled(p)),
        interface_prefix=prefix)


def _ip_sort_key(ip):
    import ipaddress
    return ipaddress.ip_address(ip)


# -- pure: rendering --------------------------------------------------------------

# BGP timers: short, so that a new host or a restarted BIRD is routed within
# seconds (defaults are minutes); the hold time still rides out a busy host.
BGP_TIMERS = ("connect delay time 1;", "connect retry time 2;", "error wait time 1, 10;",
              "error forget time 30;", "hold time 30;", "keepalive time 5;")


def _prefix_set(cidrs):
    return "[ %s ]" % ", ".join("%s+" % cidr for cidr in cidrs)


def render_bird_config(inputs):
    """The complete BIRD 2 configuration text for ``inputs`` (pure)."""
    lines = [
        "# BIRD 2 configuration for host %s, written by calico-agent from etcd." % inputs.hostname,
        "# Rewritten on every relevant change; edits here are lost.",
        "",
        "router id %s;" % inputs.router_id,
        "log stderr all;",
        "",
    ]
    for version in (4, 6):
        lines += _render_filters(inputs, version)
    lines += [
        "protocol device {",
        "  scan time 2;",
        "}",
        "",
        "# The host's connected networks resolve peers' next hops; workload",
        "# veths and tunnel devices are not networks of the host.",
        "protocol direct {",
        "  ipv4;",
        "  ipv6;",
        "  interface %s, \"*\";" % ", ".join(
            '-"%s"' % name for name in ("%s*" % inputs.interface_prefix,) + TUNNEL_DEVICES),
        "}",
        "",
    ]
    for version in (4, 6):
        lines += [
            "# Learns the workload routes the agent installs; installs BGP routes.",
            "protocol kernel kernel_v%d {" % version,
            "  ipv%d {" % version,
            "    import all;",
            "    export filter calico_kernel_v%d;" % version,
            "  };",
            "  learn;",
            "  scan time 1;",
            "}",
            "",
        ]
    peers_by_version = {4: [], 6: []}
    for spec in inputs.peers:
        peers_by_version[spec.version].append(spec)
    for version, local_ip in ((4, inputs.router_id), (6, inputs.ipv6)):
        if local_ip is None:
            lines += ["# No IPv%d address on this host: no IPv%d sessions." % (version, version), ""]
            continue
        lines += [
            "template bgp calico_v%d {" % version,
            "  local %s as %d;" % (local_ip, inputs.local_as),
            "  multihop;",
        ] + ["  %s" % timer for timer in BGP_TIMERS] + [
            "  ipv%d {" % version,
            "    import all;",
            "    export filter calico_bgp_v%d;" % version,
            "    next hop self;",
            "    gateway recursive;",
            "  };",
            "}",
            "",
        ]
        if not any(spec.kind == "Mesh" for spec in peers_by_version[version]):
            lines += ["# No node-to-node mesh sessions over IPv%d." % version, ""]
        for spec in peers_by_version[version]:
            lines += [
                "protocol bgp %s from calico_v%d {" % (spec.protocol_name, version),
                "  neighbor %s as %d;" % (spec.ip, spec.as_num),
                "}",
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_filters(inputs, version):
    pools = inputs.pools_v4 if version == 4 else inputs.pools_v6
    tunnelled = inputs.tunnelled_v4 if version == 4 else inputs.tunnelled_v6
    lines = ["# To peers: local workload routes and BGP routes, inside the IPv%d pools only." % version,
             "filter calico_bgp_v%d {" % version]
    if pools:
        lines += [
            "  if net ~ %s then {" % _prefix_set(pools),
            "    if source = RTS_BGP then accept;",
            "    if source = RTS_INHERIT && ifname ~ \"%s*\" then accept;" % inputs.interface_prefix,
            "  }",
        ]
    lines += ["  reject;", "}", ""]
    lines += ["# To the kernel: routes learned from peers, except in tunnelled pools.",
              "filter calico_kernel_v%d {" % version,
              "  if source != RTS_BGP then reject;"]
    if tunnelled:
        lines.append("  if net ~ %s then reject;" % _prefix_set(tunnelled))
    lines += ["  accept;", "}", ""]
    return lines


# -- effects: the BIRD process ----------------------------------------------------

class BirdManager(Component):
    """Keeps one BIRD running with the configuration etcd calls for.

    :param config: the AgentConfig (hostname, run_dir, log_dir).
    :param ipip_tunnelled: callable -> bool, True when the agent routes IPIP
        pools itself (the IPIP component's verdict on the kernel).
    """

    def __init__(self, config, ipip_tunnelled=lambda: False, bird_binary="bird",
                 birdc_binary="birdc"):
        self.hostname = config.hostname
        self.run_dir = config.run_dir
        self.log_dir = config.log_dir
        self.config_path = os.path.join(self.run_dir, "bird.cfg")
        self.socket_path = os.path.join(self.run_dir, "bird.ctl")
        self.pid_path = os.path.join(self.run_dir, "bird.pid")
        self.log_path = os.path.join(self.log_dir, "bird.log")
        self._ipip_tunnelled = ipip_tunnelled
        self._bird = bird_binary
        self._birdc = birdc_binary
        self._items = {}
        """Relevant etcd leaves, key -> value."""
        self._dirty = True
        self._wanted_text = None
        """The config text BIRD should be running with; None: BIRD should not run."""
        self._loaded_text = None
        """The text BIRD last read (at start or reload); differs while a reload is due."""
        self._process = None
        self._pid = None
        self._last_start = -RESTART_INTERVAL
        self.restarts = 0
        """How often BIRD died and was started again (for tests and status)."""

    # -- Component interface -------------------------------------------------------
    def on_snapshot(self, items):
        self._items = {key: value for key, value in items.items() if is_relevant_key(key)}
        self._dirty = True

    def on_update(self, key, value):
        if value is None:
            # A deleted directory (even /calico itself) takes its leaves along.
            prefix = key.rstrip("/") + "/"
            gone = [k for k in self._items if k == key or k.startswith(prefix)]
            for existing in gone:
                del self._items[existing]
            self._dirty = self._dirty or bool(gone)
        elif is_relevant_key(key) and self._items.get(key) != value:
            self._items[key] = value
            self._dirty = True

    def flush(self):
        if self._dirty:
            self._dirty = False
            # Only ask (the IPIP probe may touch the kernel) when it matters.
            ipip = any(pool.ipip for pool in parse_pools(self._items)) and bool(self._ipip_tunnelled())
            inputs = calculate_bird_inputs(self._items, self.hostname, ipip_tunnelled=ipip)
            self._wanted_text = render_bird_config(inputs) if inputs is not None else None
        self._apply()

    def tick(self, now):
        self._apply()     # restarts a dead BIRD; retries a reload that failed

    def close(self):
        self.stop_bird()

    # -- state -------------------------------------------------------------------------
    @property
    def pid(self):
        return self._pid

    @property
    def running(self):
        if self._process is not None:
            return self._process.poll() is None
        return self._pid is not None and _is_our_bird(self._pid, self.socket_path)

    def _apply(self):
        if self._wanted_text is None:
            if self._pid is not None:
                LOG.info("No IPv4 address recorded for %s: stopping BIRD", self.hostname)
                self.stop_bird()
            return
        if self._pid is None:
            self._adopt_running_bird()
        if not self.running:
            if time.monotonic() - self._last_start < RESTART_INTERVAL:
                return        # a BIRD that dies at once must not be restarted in a tight loop
            if self._pid is not None:
                LOG.warning("BIRD (pid %d) is not running; starting it again", self._pid)
                self.restarts += 1
            self._write_config(self._wanted_text)
            self._start()
            return
        if self._loaded_text != self._wanted_text:
            self._write_config(self._wanted_text)
            if self._reload():
                self._loaded_text = self._wanted_text

    def _write_config(self, text):
        """Write bird.cfg atomically, after BIRD itself has accepted the text."""
        from calicoctl.host.run import run_status
        os.makedirs(self.run_dir, exist_ok=True)
        temp = "%s.tmp.%d" % (self.config_path, os.getpid())
        with open(temp, "w") as handle:
            handle.write(text)
        code, out, err = run_status([self._bird, "-p", "-c", temp], timeout=10)
        if code != 0:
            os.unlink(temp)
            # A bug in render_bird_config: keep the last good file.
            LOG.error("BIRD rejects the rendered configuration, keeping the old one: %s\n%s",
                      (err or out).strip(), text)
            return False
        os.replace(temp, self.config_path)
        return True

    def _start(self):
        os.makedirs(self.log_dir, exist_ok=True)
        for stale in (self.socket_path, self.pid_path):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        args = [self._bird, "-f", "-c", self.config_path, "-s", self.socket_path, "-P", self.pid_path]
        with open(self.log_path, "ab") as log:
            # Own session: a signal meant for the agent's terminal group must
            # not take BIRD down with it; the agent stops BIRD itself.
            self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             close_fds=True)
        self._pid = self._process.pid
        # BIRD writes this file too, once its config is read; writing it now
        # lets an agent restarted in between find (and adopt) this BIRD.
        with open(self.pid_path, "w") as handle:
            handle.write("%d\n" % self._pid)
        self._last_start = time.monotonic()
        self._loaded_text = self._wanted_text
        LOG.info("Started BIRD (pid %d) with %s", self._pid, self.config_path)

    def _reload(self):
        from calicoctl.host.run import run_status
        code, out, err = run_status([self._birdc, "-s", self.socket_path, "configure"], timeout=10)
        text = (out + err).strip()
        if code == 0 and ("Reconfigured" in text or "Reconfiguration in progress" in text
                          or "queued" in text.lower()):
            LOG.info("BIRD re-read %s", self.config_path)
            return True
        LOG.warning("birdc configure did not succeed (exit %d): %s", code, text)
        return False

    def _adopt_running_bird(self):
        """Take over a BIRD a previous agent started for this run dir, if alive."""
        try:
            with open(self.pid_path) as handle:
                pid = int(handle.read().strip() or 0)
        except (OSError, ValueError):
            return
        if pid and _is_our_bird(pid, self.socket_path):
            self._pid = pid
            self._last_start = time.monotonic()
            self._loaded_text = None        # unknown: reload once
            LOG.info("Adopted running BIRD (pid %d)", pid)

    def stop_bird(self):
        """Stop BIRD by PID (SIGTERM, then SIGKILL); BIRD withdraws its routes."""
        import signal
        pid, process = self._pid, self._process
        self._pid = self._process = None
        self._loaded_text = None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if process is not None:
                if process.poll() is not None:
                    break
            elif not _pid_alive(pid):
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if process is not None:
                process.wait()
        LOG.info("Stopped BIRD (pid %d)", pid)


def _pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _is_our_bird(pid, socket_path):
    """True if ``pid`` is a live BIRD using our control socket."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return (_pid_alive(pid) and bool(argv) and os.path.basename(argv[0]) == b"bird"
            and socket_path.encode() in argv)


def parse_bird_protocols(text):
    """``birdc show protocols`` output -> list of dicts (name, proto, table,
    state, since, info) (pure). Useful to tests and ``calicoctl status``."""
    rows = []
    header_seen = False
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[:2] == ["Name", "Proto"]:
            header_seen = True
            continue
        if not header_seen or len(parts) < 4:
            continue
        name, proto, table, state = parts[:4]
        rest = parts[4:]
        # "since" is a time (and maybe a date before it) -- everything up to info.
        since, info = [], []
        for word in rest:
            if not info and (":" in word or "-" in word) and word[:1].isdigit():
                since.append(word)
            else:
                info.append(word)
        rows.append({"name": name, "proto": proto, "table": table, "state": state,
                     "since": " ".join(since), "info": " ".join(info)})
    return rows
