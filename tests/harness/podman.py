"""Podman in a simulated host (``SimHost(podman=True)``, ``host.podman``).

Debian 12's Podman 4.3 with its CNI network backend, rootful, with
everything of its own inside the host's private /var/lib/calico tmpfs:
its configuration (given by CONTAINERS_CONF / CONTAINERS_STORAGE_CONF),
storage (root, and runroot in the host's /run), the CNI configuration
directory ``conf_dir`` and plugin directory ``bin_dir`` (never the
machine's /etc/cni or /opt/cni), and a ``busybox`` image imported from
busybox-static as the Docker harness builds it. libcni's result cache is
the host's private /var/lib/cni. Containers get a cgroup parent of their
own, removed with them.

Settings Podman needs here: ``default_ulimits`` (runc cannot raise the
limits Podman asks for by default in this VM), the ``cgroupfs`` cgroup
manager and a file for events (no systemd in a simulated host).
"""
import os
import secrets
import subprocess

from tests.harness.util import remove_cgroup_parent

BASE = "/var/lib/calico/podman"
IMAGE = "localhost/busybox:latest"
STORAGE_DRIVER = "vfs"


def render_containers_conf(conf_dir, bin_dir, base=BASE):
    return "\n".join([
        "[containers]",
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]',
        'cgroups = "no-conmon"',
        "[network]",
        'network_backend = "cni"',
        'network_config_dir = "%s"' % conf_dir,
        'cni_plugin_dirs = ["%s"]' % bin_dir,
        "[engine]",
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        'events_logfile_path = "%s/events.log"' % base,
        'tmp_dir = "/run/libpod"',
        "",
    ])


def render_storage_conf(base=BASE):
    return "\n".join(["[storage]", 'driver = "%s"' % STORAGE_DRIVER, 'graphroot = "%s/storage"' % base,
                      'runroot = "/run/containers/storage"', ""])


class HostPodman:
    """Podman of one simulated host. ``run(*args)`` runs ``podman`` there.

    :ivar conf_dir: the CNI configuration directory, as the host sees it.
    :ivar bin_dir: the CNI plugin directory, as the host sees it.
    """

    def __init__(self, host):
        self.host = host
        self.conf_dir = BASE + "/cni/net.d"
        self.bin_dir = BASE + "/cni/bin"
        self.cgroup_parent = "calico-sim-podman-%s-%s" % (host.name, secrets.token_hex(3))
        self.env = {"CONTAINERS_CONF": BASE + "/containers.conf",
                    "CONTAINERS_STORAGE_CONF": BASE + "/storage.conf"}

    def _outside(self, path):
        return "/proc/%d/root%s" % (self.host.pid, path)

    def start(self):
        """Write the configuration and import the busybox image; returns self."""
        from tests.harness.docker import busybox_rootfs_tar
        for directory in (self.conf_dir, self.bin_dir, BASE + "/storage"):
            os.makedirs(self._outside(directory), exist_ok=True)
        for path, text in ((self.env["CONTAINERS_CONF"], render_containers_conf(self.conf_dir, self.bin_dir)),
                           (self.env["CONTAINERS_STORAGE_CONF"], render_storage_conf())):
            with open(self._outside(path), "w") as handle:
                handle.write(text)
        tarball = BASE + "/busybox.tar"
        with open(self._outside(tarball), "wb") as handle:
            handle.write(busybox_rootfs_tar())
        self.run("import", "--change", 'CMD ["sh"]', tarball, IMAGE)
        os.unlink(self._outside(tarball))
        return self

    def run(self, *args, check=True, timeout=90):
        """``podman <args>`` in the host; the CompletedProcess (text)."""
        result = self.host.run(["podman"] + list(args), env=self.env, timeout=timeout, cwd="/")
        if check and result.returncode != 0:
            raise AssertionError("podman %s on %s failed (exit %d): %s%s" % (
                " ".join(args), self.host.name, result.returncode, result.stdout, result.stderr))
        return result

    def run_container(self, name, network, *options):
        """``podman run -d`` a busybox that sleeps, on ``network``."""
        return self.run("run", "-d", "--name", name, "--network", network,
                        "--cgroup-parent", "/" + self.cgroup_parent, *options, IMAGE, "sleep", "100000")

    def container_ids(self):
        """{name: full ID} of every container (running or not)."""
        out = self.run("ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def destroy(self):
        """Remove every container (their processes live in namespaces of
        their own, beyond the host's teardown) and the cgroup parent."""
        try:
            self.run("rm", "-a", "-f", "-t", "0", check=False, timeout=120)
        except subprocess.TimeoutExpired:
            pass
        remove_cgroup_parent(self.cgroup_parent)
