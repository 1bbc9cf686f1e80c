"""Collect what someone needs to debug this host into one tarball.

Layout inside ``diags-<timestamp>.tar.gz`` (one directory, ``diagnostics/``):
one text file per command (iptables-save, ip6tables-save, ipset list,
nft list ruleset, routes, links, addresses, BIRD's protocols, ...),
``dataplane.txt`` naming the policy dataplane the agent runs, ``etcd.txt`` with this
host's keys and the cluster-wide settings it depends on, ``logs/`` (a copy
of the log dir), ``run/`` (the agent's status and pid files, BIRD's config)
and ``NOTES.txt`` listing whatever could not be collected. A missing tool or
an unreachable etcd is noted, never fatal (docs/decisions.md, "diags").
"""
import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from typing import List, Optional

from calicoctl.datastore import paths
from calicoctl.errors import CalicoError
from calicoctl.host.run import run_status
from calicoctl.identity import BIRD_SOCKET, RUN_DIR


@dataclass
class DiagsResult:
    path: str
    files: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    dataplane: Optional[str] = None
    """The policy dataplane the running agent reported (None: no agent, or an older one)."""


def calculate_commands(run_dir=RUN_DIR):
    """(file name, argv) of every command whose output goes in the tarball."""
    bird_socket = os.path.join(run_dir, BIRD_SOCKET)
    return [
        ("date.txt", ["date", "--utc", "+%Y-%m-%dT%H:%M:%SZ"]),
        ("hostname.txt", ["hostname"]),
        ("iptables-save.txt", ["iptables-save", "-c"]),
        ("ip6tables-save.txt", ["ip6tables-save", "-c"]),
        ("iptables-legacy-save.txt", ["iptables-legacy-save", "-c"]),
        ("ip6tables-legacy-save.txt", ["ip6tables-legacy-save", "-c"]),
        ("ipset-list.txt", ["ipset", "list"]),
        ("nft-ruleset.txt", ["nft", "list", "ruleset"]),
        ("ip-route-v4.txt", ["ip", "-4", "route", "show", "table", "all"]),
        ("ip-route-v6.txt", ["ip", "-6", "route", "show", "table", "all"]),
        ("ip-link.txt", ["ip", "-d", "link", "show"]),
        ("ip-addr.txt", ["ip", "addr", "show"]),
        ("ip-neigh-proxy.txt", ["ip", "neigh", "show", "proxy"]),
        ("sockets.txt", ["ss", "-tanp"]),
        ("sysctl-net.txt", ["sysctl", "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]),
        ("bird-protocols.txt", ["birdc", "-s", bird_socket, "show", "protocols", "all"]),
    ]


def calculate_etcd_prefixes(hostname):
    """The etcd subtrees that describe this host and what it depends on."""
    return [paths.READY, paths.CONFIG_DIR, paths.host_dir(hostname), paths.bgp_host_dir(hostname),
            paths.felix_host_dir(hostname), paths.BGP_GLOBAL_DIR, paths.pools_dir(4),
            paths.pools_dir(6), paths.PROFILES_DIR]


def render_etcd_dump(items):
    """[(key, value)] -> text, one ``key = value`` per line."""
    return "".join("%s = %s\n" % (key, value) for key, value in items)


def _timestamp():
    return time.strftime("%Y%m%d_%H%M%S")


def collect_diags(hostname, log_dir, datastore=None, run_dir=RUN_DIR, base_dir=None):
    """Write the tarball; return DiagsResult (its path and the notes).

    ``datastore`` None skips etcd. ``base_dir`` is where the temporary dir
    (and so the tarball) goes; default: the system's temp dir.
    """
    work = tempfile.mkdtemp(prefix="calico-diags-", dir=base_dir)
    top = os.path.join(work, "diagnostics")
    os.makedirs(top)
    result = DiagsResult(path=os.path.join(work, "diags-%s.tar.gz" % _timestamp()))

    for name, argv in calculate_commands(run_dir):
        code, out, err = run_status(argv, timeout=30)
        if code == 127:
            result.notes.append("%s: %s is not installed." % (name, argv[0]))
            continue
        with open(os.path.join(top, name), "w") as handle:
            handle.write("# %s (exit %d)\n" % (" ".join(argv), code))
            handle.write(out)
            if err.strip():
                handle.write("\n# stderr:\n" + err)
        if code != 0:
            lines = (err or out).strip().splitlines()
            result.notes.append("%s: %s exited with %d: %s" % (
                name, argv[0], code, lines[-1] if lines else "no output"))
        result.files.append(name)

    _note_dataplane(run_dir, top, result)
    _collect_etcd(datastore, hostname, top, result)
    _copy_tree(log_dir, os.path.join(top, "logs"), result, "logs")
    _copy_tree(run_dir, os.path.join(top, "run"), result, "run dir")

    if result.notes:
        with open(os.path.join(top, "NOTES.txt"), "w") as handle:
            handle.write("".join(note + "\n" for note in result.notes))
    with tarfile.open(result.path, "w:gz") as tar:
        tar.add(top, arcname="diagnostics")
    shutil.rmtree(top, ignore_errors=True)
    return result


def _note_dataplane(run_dir, top, result):
    from calicoctl.ops import status as status_ops
    status = status_ops.read_local_status(run_dir)
    result.dataplane = status.dataplane if status is not None else None
    with open(os.path.join(top, "dataplane.txt"), "w") as handle:
        handle.write("%s\n" % (result.dataplane or "unknown: no running agent reported one"))
    result.files.append("dataplane.txt")


def _collect_etcd(datastore, hostname, top, result):
    if datastore is None:
        result.notes.append("etcd.txt: etcd was not consulted.")
        return
    items = []
    try:
        for prefix in calculate_etcd_prefixes(hostname):
            items.extend(datastore.dump_tree(prefix))
    except CalicoError as exc:
        result.notes.append("etcd.txt: could not read etcd: %s" % exc)
        if not items:
            return
    with open(os.path.join(top, "etcd.txt"), "w") as handle:
        handle.write(render_etcd_dump(items))
    result.files.append("etcd.txt")


def _copy_tree(source, target, result, what):
    """Copy regular files only (sockets, pipes and lock files are skipped)."""
    if not os.path.isdir(source):
        result.notes.append("%s: %s does not exist, skipped." % (what, source))
        return
    copied = 0
    for directory, _dirs, names in os.walk(source):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.isfile(path) or os.path.islink(path) or name.endswith(".lock") or name == "lock":
                continue
            destination = os.path.join(target, os.path.relpath(path, source))
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            try:
                shutil.copy2(path, destination)
                copied += 1
            except OSError as exc:
                result.notes.append("%s: could not copy %s: %s" % (what, path, exc))
    if copied:
        result.files.append(os.path.basename(target) + "/")
    else:
        result.notes.append("%s: no files in %s." % (what, source))
