"""Name resolution: host names of etcd endpoints to addresses.

``resolve`` asks the system resolver (``getaddrinfo``: /etc/hosts, DNS) and
returns the addresses, or () when the name does not resolve.
``PeriodicResolver`` does that for a few names from a thread, at once and
then every ``interval`` seconds, and reports each time the answers change,
so a slow or dead DNS server never stalls its caller.
"""
import logging
import socket
import threading

LOG = logging.getLogger(__name__)


def resolve(name):
    """Sorted addresses (IPv4 and IPv6) ``name`` resolves to; () if none."""
    try:
        answers = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        LOG.warning("Cannot resolve %s: %s", name, exc)
        return ()
    # Scoped IPv6 answers carry "%<zone>": keep the address only.
    return tuple(sorted({answer[4][0].split("%")[0] for answer in answers}))


class PeriodicResolver:
    """Resolves ``names`` now and every ``interval`` seconds, in a thread.

    ``on_change({name: addresses})`` is called from that thread with the
    names whose answer changed (a name that stopped resolving is left out,
    so its last addresses stand).
    """

    def __init__(self, names, interval, on_change, resolve=resolve):
        self.names = tuple(names)
        self.interval = interval
        self._on_change = on_change
        self._resolve = resolve
        self._known = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="etcd-resolver", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()

    def _run(self):
        while not self._stop.is_set():
            changed = {}
            for name in self.names:
                addresses = tuple(self._resolve(name))
                if addresses and addresses != self._known.get(name):
                    self._known[name] = changed[name] = addresses
            if changed:
                LOG.info("etcd endpoints resolved: %s", "; ".join(
                    "%s -> %s" % (name, ", ".join(found)) for name, found in sorted(changed.items())))
                self._on_change(changed)
            self._stop.wait(self.interval)
