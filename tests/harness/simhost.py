"""Simulated hosts: network + UTS + mount namespaces on one shared bridge.

A :class:`Lan` is a network namespace holding a Linux bridge ``br0`` (the
LAN's gateway address lives on it).  A :class:`SimHost` is a namespace set
with its own hostname, an ``eth0`` veth whose peer is a port of that bridge,
a default route via the gateway, and private tmpfs mounts on /run,
/var/log/calico and /var/lib/calico, so pid files, control sockets and BIRD
sockets of one simulated host never collide with another's.  By default
Docker's socket is bind-mounted into each host's /run, so every host talks
to the one shared dockerd.  With ``own_dockerd=True`` a host instead runs a
dockerd of its own (``tests.harness.docker.HostDockerd``, ``host.dockerd``)
on its private /run/docker.sock, with its own containers and a ``busybox``
image, which tests may stop, restart and wipe as a real host's. With
``podman=True`` a host gets Podman (``tests.harness.podman.HostPodman``,
``host.podman``) with its CNI backend, storage and directories of its own;
its cgroup hierarchies stay visible and /var/lib/cni is private.

Each namespace set is held open by a ``sleep infinity`` "holder" process
made by ``unshare``; commands run in it through ``nsenter -t <holder pid>``.
Holders die with the process that made them (parent-death signal), so a
crashed run leaves no namespace behind; names of bridge ports carry a random
suffix so leftovers could not clash anyway.

Docker's socket is bound when a host starts: start the shared daemon first
(``tests.harness.docker.ensure_dockerd``), unless the host has its own.

No pytest import: scripts/demo.py uses this module too.
"""
import ipaddress
import os
import re
import secrets
import signal
import subprocess

from calicoctl.identity import RUN_DIR
from tests.harness.forward import PortForward
from tests.harness.util import (
    free_port, kill_pid, netns_inode, path_with_venv, pids_in_netns,
    terminate_pid, wait_for,
)

HOLDER_TIMEOUT = 10.0
BRIDGE = "br0"


class NamespaceError(RuntimeError):
    """A command needed to build or tear down a namespace failed."""


class _Namespaces:
    """Holder process + command execution shared by Lan and SimHost."""

    UNSHARE_FLAGS = ()
    NSENTER_FLAGS = ()

    def __init__(self, name):
        self.name = name
        self._holder = None
        self._processes = []
        self._forwards = []

    # -- holder --------------------------------------------------------
    @property
    def pid(self):
        """PID of the holder process (the namespaces' anchor), or None."""
        return self._holder.pid if self._holder is not None else None

    @property
    def netns_path(self):
        """``/proc/<holder>/ns/net``: usable with pyroute2's NetNS or setns."""
        return "/proc/%d/ns/net" % self.pid

    @property
    def alive(self):
        return self._holder is not None and self._holder.poll() is None

    def _start_holder(self):
        own_netns = netns_inode(os.getpid())
        # setpriv: the holder gets SIGKILL when its parent (this process) dies.
        self._holder = subprocess.Popen(
            ["setpriv", "--pdeathsig", "SIGKILL", "--", "unshare"] + list(self.UNSHARE_FLAGS)
            + ["--", "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)

        def entered():
            if self._holder.poll() is not None:
                raise NamespaceError("namespace holder for %s exited: %s" % (
                    self.name, self._holder.stderr.read().decode().strip()))
            exe = os.readlink("/proc/%d/exe" % self._holder.pid)
            return exe.endswith("sleep") and netns_inode(self._holder.pid) != own_netns
        try:
            wait_for(entered, timeout=HOLDER_TIMEOUT, interval=0.01,
                     message="namespace holder for %s" % self.name)
        except TimeoutError as exc:
            if self._holder.poll() is not None:
                raise NamespaceError(str(exc)) from None
            raise
        self._holder.stderr.close()

    def _stop_processes(self):
        """End everything running in our network namespace, then the holder.

        Every process in a namespace this harness made was started there by
        us (directly, or by a daemon we started), so ending them by PID ends
        only our own processes.
        """
        for process in self._processes:
            if process.poll() is None:
                terminate_pid(process.pid, timeout=5.0, popen=process)
        self._processes = []
        for forward in self._forwards:
            forward.stop()
        self._forwards = []
        if not self.alive:
            self._holder = None
            return
        inode = netns_inode(self._holder.pid)
        if inode is not None:
            others = pids_in_netns(inode, exclude={self._holder.pid})
            for pid in others:
                terminate_pid(pid, timeout=5.0)
        kill_pid(self._holder.pid, popen=self._holder)
        self._holder = None

    # -- running commands ---------------------------------------------
    @property
    def exec_prefix(self):
        """Command prefix that runs the rest of a command inside us.

        nsenter resets the working directory when it enters a mount
        namespace; ``run``/``popen`` add ``--wd`` to keep it.
        """
        if not self.alive:
            raise NamespaceError("%s is not running" % self.name)
        return ["nsenter", "-t", str(self.pid)] + list(self.NSENTER_FLAGS) + ["--"]

    def _command(self, args, cwd):
        if isinstance(args, str):
            args = ["sh", "-c", args]
        prefix = self.exec_prefix
        return prefix[:-1] + ["--wd=%s" % (cwd or os.getcwd()), "--"] + list(args)

    @staticmethod
    def _environment(env):
        """os.environ updated by ``env`` (None values remove a variable),
        with the repo's .venv/bin first on PATH."""
        merged = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        merged["PATH"] = path_with_venv(merged.get("PATH"))
        return merged

    def run(self, args, env=None, input=None, timeout=60, check=False, cwd=None):
        """Run ``args`` (a list, or a string for ``sh -c``) inside; capture text output."""
        return subprocess.run(self._command(args, cwd), env=self._environment(env), input=input,
                              timeout=timeout, check=check, capture_output=True, text=True)

    def popen(self, args, env=None, cwd=None, **kwargs):
        """Start ``args`` inside; the process is tracked and ended by stop()."""
        process = subprocess.Popen(self._command(args, cwd), env=self._environment(env),
                                   **kwargs)
        self._processes = [p for p in self._processes if p.poll() is None] + [process]
        return process

    def _script(self, script, what):
        """Run a ``sh -e`` script inside; raise NamespaceError on failure."""
        result = self.run(["sh", "-ec", script], cwd="/", timeout=30)
        if result.returncode != 0:
            raise NamespaceError("%s: %s failed (exit %d): %s" % (
                self.name, what, result.returncode, (result.stderr or result.stdout).strip()))
        return result

    # -- port forwarding ----------------------------------------------
    def publish(self, port, host=None, local_port=None):
        """Make ``host:port`` inside reachable at 127.0.0.1:<local_port> in the
        caller's namespace; returns the started PortForward (``.authority``)."""
        forward = PortForward("127.0.0.1", local_port or free_port(), host or "127.0.0.1",
                              port, target_netns=self.netns_path).start()
        self._forwards.append(forward)
        return forward

    def expose(self, authority, port, host="0.0.0.0"):
        """Listen inside on ``host:port`` and forward to ``authority`` in the
        caller's namespace (e.g. an etcd on loopback); returns the PortForward."""
        target_host, _, target_port = authority.rpartition(":")
        forward = PortForward(host, port, target_host, int(target_port), runner=self,
                              target_netns="/proc/%d/ns/net" % os.getpid()).start()
        self._forwards.append(forward)
        return forward

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    def destroy(self):
        raise NotImplementedError


class Lan(_Namespaces):
    """A LAN: one network namespace with bridge ``br0`` holding the gateway.

    :ivar gateway: the gateway IPv4 address (on br0), hosts' default route.
    :ivar network: the subnet (ipaddress.IPv4Network).
    :ivar gateway6: optional IPv6 gateway address on br0 (with ``subnet6``).
    """

    UNSHARE_FLAGS = ("--net", "--mount", "--propagation", "private")
    NSENTER_FLAGS = ("-n", "-m")

    def __init__(self, name="calico-lan", subnet="172.17.8.0/24", gateway="172.17.8.1",
                 subnet6=None, gateway6=None):
        super().__init__(name)
        self.network = ipaddress.ip_network(subnet)
        self.gateway = str(ipaddress.ip_address(gateway))
        self.network6 = ipaddress.ip_network(subnet6) if subnet6 else None
        self.gateway6 = str(ipaddress.ip_address(gateway6)) if gateway6 else None
        if self.gateway6 and not self.network6:
            raise ValueError("gateway6 needs subnet6")

    @property
    def prefixlen(self):
        return self.network.prefixlen

    def create(self):
        """Make the namespace and its bridge; returns self."""
        if self.alive:
            return self
        try:
            self._start_holder()
            commands = [
                "ip link set lo up",
                "ip link add %s type bridge" % BRIDGE,
                "ip addr add %s/%d dev %s" % (self.gateway, self.prefixlen, BRIDGE),
                "ip link set %s up" % BRIDGE,
                "sysctl -qw net.ipv4.ip_forward=1",
            ]
            if self.gateway6:
                commands += [
                    "sysctl -qw net.ipv6.conf.all.forwarding=1",
                    "ip -6 addr add %s/%d dev %s nodad" % (self.gateway6, self.network6.prefixlen,
                                                        BRIDGE),
                ]
            self._script("\n".join(commands), "creating the bridge")
        except BaseException:
            self.destroy()
            raise
        return self

    start = create

    def destroy(self):
        """End everything in the LAN namespace; safe to call repeatedly."""
        self._stop_processes()

    stop = destroy

    def __enter__(self):
        return self.create()

    def __repr__(self):
        return "Lan(%s, %s, pid=%s)" % (self.name, self.network, self.pid)


class Sandbox(_Namespaces):
    """A bare network namespace, as a container runtime makes one for a
    container before it runs the CNI plugins (``netns_path`` is CNI_NETNS)."""

    UNSHARE_FLAGS = ("--net",)
    NSENTER_FLAGS = ("-n",)

    def start(self):
        self._start_holder()
        return self

    def destroy(self):
        self._stop_processes()

    stop = destroy


def _port_name(host_name):
    """Bridge-side veth name: <=15 chars, unique per SimHost instance."""
    stem = re.sub(r"[^A-Za-z0-9]", "", host_name)[-6:] or "host"
    return "v%s%s" % (stem, secrets.token_hex(3))


class SimHost(_Namespaces):
    """A simulated host on a :class:`Lan`.

    :ivar name: the hostname inside.
    :ivar ip: IPv4 address of eth0.
    :ivar ip6: IPv6 address of eth0 or None (``ip6`` may carry "/<prefix>").
    :ivar port_name: the bridge port (veth peer) in the LAN namespace.
    """

    UNSHARE_FLAGS = ("--net", "--uts", "--mount", "--propagation", "private")
    NSENTER_FLAGS = ("-n", "-u", "-m")
    PRIVATE_DIRS = ("/var/lib/calico", "/var/log/calico")

    def __init__(self, name, ip, lan, prefixlen=None, ip6=None, prefixlen6=64,
                 docker_socket="/run/docker.sock", own_dockerd=False, dockerd_state_dir=None,
                 docker_iptables=False, podman=False):
        super().__init__(name)
        self.ip = str(ipaddress.ip_address(ip))
        self.lan = lan
        # Default: the LAN's own prefix length (24 for the default LAN).
        self.prefixlen = prefixlen or lan.prefixlen
        if ip6 and "/" in ip6:
            ip6, _, prefix = ip6.partition("/")
            prefixlen6 = int(prefix)
        self.ip6 = str(ipaddress.ip_address(ip6)) if ip6 else None
        self.prefixlen6 = prefixlen6
        self.docker_socket = docker_socket
        self.own_dockerd = own_dockerd
        self.docker_iptables = docker_iptables
        """With its own dockerd: Docker manages iptables and a default bridge."""
        self._dockerd_state_dir = dockerd_state_dir
        self.dockerd = None
        """The host's own HostDockerd (``own_dockerd=True``), else None."""
        self.podman_enabled = podman
        self.podman = None
        """The host's HostPodman (``podman=True``), else None."""
        self.port_name = _port_name(name)

    def start(self):
        """Build the namespaces, mounts and network; returns self."""
        if self.alive:
            return self
        if not self.lan.alive:
            raise NamespaceError("LAN %s is not running" % self.lan.name)
        for directory in self.PRIVATE_DIRS + (("/var/lib/cni",) if self.podman_enabled else ()):
            os.makedirs(directory, exist_ok=True)
        try:
            self._start_holder()
            self._script(self._render_setup_script(), "setting up")
            self.lan._script("ip link set %s master %s up" % (self.port_name, BRIDGE),
                             "attaching %s to the bridge" % self.port_name)
            if self.own_dockerd:
                self._start_own_dockerd()
            if self.podman_enabled:
                from tests.harness.podman import HostPodman
                self.podman = HostPodman(self).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_own_dockerd(self):
        from tests.harness.docker import HostDockerd, ensure_busybox_image
        self.dockerd = HostDockerd(self, state_dir=self._dockerd_state_dir,
                                   manages_iptables=self.docker_iptables).start()
        client = self.dockerd.client()
        try:
            ensure_busybox_image(client)
        finally:
            client.close()

    def _render_setup_script(self):
        # /run is replaced by a tmpfs; Docker's socket is first bind-mounted
        # to a spot inside the (new, private) /var/lib/calico tmpfs while the
        # real one is still visible, then bound from there into the new /run.
        # A host with its own dockerd (or Podman) needs the cgroup
        # hierarchies, which the new sysfs hides: they are kept the same way.
        stash = "/var/lib/calico/.docker.sock"
        cgroups = "/var/lib/calico/.cgroup"
        sock = self.docker_socket
        lines = [
            "hostname %s" % self.name,
            "mount -t tmpfs -o mode=0755 calico-lib /var/lib/calico",
        ]
        if self.own_dockerd or self.podman_enabled:
            lines += [
                "mkdir %s" % cgroups,
                "mount --rbind /sys/fs/cgroup %s" % cgroups,
                "mount -t sysfs sysfs /sys",
                "mount --rbind %s /sys/fs/cgroup" % cgroups,
                "umount -R %s" % cgroups,
                "rmdir %s" % cgroups,
            ]
        else:
            lines.append("mount -t sysfs sysfs /sys")
        if self.own_dockerd:
            lines.append("mount -t tmpfs -o mode=0755 run /run")
        else:
            lines += [
                "if [ -S %s ]; then : > %s; mount --bind %s %s; fi" % (sock, stash, sock, stash),
                "mount -t tmpfs -o mode=0755 run /run",
                "if [ -e %s ]; then : > %s; mount --bind %s %s; umount %s; rm -f %s; fi"
                % (stash, sock, stash, sock, stash, stash),
            ]
        if self.podman_enabled:
            # libcni keeps its cache of results there, for CHECK and DEL.
            lines.append("mount -t tmpfs -o mode=0700 calico-cni /var/lib/cni")
        lines += [
            "mount -t tmpfs -o mode=0755 calico-log /var/log/calico",
            "mkdir -p /run/lock %s /run/bird" % RUN_DIR,
            "ip link set lo up",
            "ip link add eth0 type veth peer name %s netns %d" % (self.port_name, self.lan.pid),
            "ip addr add %s/%d dev eth0" % (self.ip, self.prefixlen),
            "ip link set eth0 up",
            "ip route add default via %s" % self.lan.gateway,
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
        ]
        if self.ip6:
            lines.append("ip -6 addr add %s/%d dev eth0 nodad" % (self.ip6, self.prefixlen6))
            if self.lan.gateway6:
                lines.append("ip -6 route add default via %s" % self.lan.gateway6)
        return "\n".join(lines)

    def wipe_run(self):
        """Empty the host's /run as a reboot does (a fresh tmpfs with the
        usual directories). Stop what keeps files there (its dockerd) first;
        a shared Docker socket is bound in again."""
        stash = "/var/lib/calico/.docker.sock"
        sock = self.docker_socket
        lines = ["umount -l /run"]
        if not self.own_dockerd:
            lines.insert(0, "if [ -S %s ]; then : > %s; mount --bind %s %s; fi" % (sock, stash, sock, stash))
        lines += ["mount -t tmpfs -o mode=0755 run /run",
                  "mkdir -p /run/lock %s /run/bird" % RUN_DIR]
        if not self.own_dockerd:
            lines.append("if [ -e %s ]; then : > %s; mount --bind %s %s; umount %s; rm -f %s; fi"
                         % (stash, sock, stash, sock, stash, stash))
        self._script("\n".join(lines), "wiping /run")

    def power_off(self):
        """What a power cut and a boot leave: every process of the host (the
        agent, BIRD, its own dockerd with containerd, shims and containers)
        SIGKILLed at once; interfaces and routes of the containers gone with
        their namespaces, nftables rules and ipsets flushed, /run empty. A
        dockerd's containers stay on disk, recorded as running."""
        pids = set(pids_in_netns(netns_inode(self.pid), exclude={self.pid}))
        if self.dockerd is not None:
            pids |= self.dockerd.container_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)     # ours: started in this simulated host
            except ProcessLookupError:
                pass
        for pid in pids:
            kill_pid(pid)                       # waits until it is gone
        for process in self._processes:
            process.poll()
        if self.dockerd is not None:
            self.dockerd.reap()
        self._script("nft flush ruleset; ipset destroy 2>/dev/null || true", "flushing the dataplane")
        self.wipe_run()

    def stop(self):
        """End our processes in the host, the holder, and remove the bridge
        port; safe to call repeatedly and after a partial start.  Its own
        dockerd and Podman go first, with their containers and data."""
        if self.podman is not None:
            if self.alive:
                self.podman.destroy()
            self.podman = None
        if self.dockerd is not None:
            if self.alive:
                self.dockerd.destroy()
            self.dockerd = None
        self._stop_processes()
        if self.lan.alive:
            # Normally gone with the host's namespace; make sure.
            self.lan.run(["ip", "link", "del", self.port_name], cwd="/")

    destroy = stop

    def __enter__(self):
        return self.start()

    def __repr__(self):
        return "SimHost(%s, %s, pid=%s)" % (self.name, self.ip, self.pid)
