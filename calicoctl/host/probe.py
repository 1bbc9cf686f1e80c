"""Real traffic from inside a workload's network namespace (``policy ... --probe``).

A probe sends what ``calicoctl.policy_eval.Packet`` describes, from its
source address (and source port, when it names one), and says whether the
destination answered:

- TCP: a connection accepted, or refused by a reset (nothing listens), was
  reached; silence until the timeout was not;
- UDP: an answer, or an ICMP port unreachable (nothing listens), was
  reached; silence was not;
- ping: an echo reply from the destination was reached.

Only the socket is made inside the namespace: this thread enters it
(``netlink.entered_netns``) for the ``socket()`` call alone, and a socket
keeps the namespace it was made in. So probes run in parallel threads
without a process each. TCP sockets close with a reset (no TIME_WAIT left
for the next probe of the same ports), and every socket takes
SO_REUSEADDR, so probes from one fixed source port run side by side.

A probe that is not answered is sent again (``attempts``): a first packet
may be lost to neighbour resolution, a drop never answers.
"""
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from calicoctl.errors import HostNetworkError

TCP, UDP = 6, 17
ICMP_PROTOCOLS = {4: socket.IPPROTO_ICMP, 6: socket.IPPROTO_ICMPV6}
ECHO = {4: (8, 0), 6: (128, 129)}        # family -> (request type, reply type)
PAYLOAD = b"calico policy probe"


@dataclass(frozen=True)
class Observation:
    reached: bool
    detail: str


def probe(netns, packet, timeout=1.0, attempts=2):
    """Send ``packet`` from inside ``netns`` (a namespace path) and return the
    Observation. HostNetworkError when it cannot even be sent (the source
    address is not in the namespace, the namespace is gone)."""
    if packet.protocol in (TCP, UDP):
        send = _connect
    elif packet.icmp_type is not None:
        send = _ping
    else:
        raise HostNetworkError("Only ping, TCP and UDP can be probed, not protocol %d." % packet.protocol)
    observation = None
    for _ in range(attempts):
        observation = send(netns, packet, timeout)
        if observation.reached:
            break
    return observation


def _socket(netns, packet, kind, protocol=0):
    from calicoctl.host import netlink
    family = socket.AF_INET if packet.version == 4 else socket.AF_INET6
    with netlink.entered_netns(netns):
        sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((packet.source, packet.source_port or 0))
    except OSError as exc:
        sock.close()
        raise HostNetworkError("Cannot send from %s%s in %s: %s." % (
            packet.source, " port %d" % packet.source_port if packet.source_port else "", netns,
            exc.strerror)) from None
    return sock


def _silence(timeout):
    return Observation(False, "no answer within %g s" % timeout)


def _connect(netns, packet, timeout):
    """TCP: connect; UDP: connect, send, wait for an answer."""
    tcp = packet.protocol == TCP
    sock = _socket(netns, packet, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        if tcp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.settimeout(timeout)
        try:
            sock.connect((packet.destination, packet.destination_port))
            if not tcp:
                sock.send(PAYLOAD)
                sock.recv(512)
        except ConnectionRefusedError:
            return Observation(True, "refused with a reset (nothing listens there)" if tcp
                               else "answered with port unreachable (nothing listens there)")
        except socket.timeout:
            return _silence(timeout)
        except OSError as exc:
            return Observation(False, exc.strerror)
        return Observation(True, "connection accepted" if tcp else "answered")
    finally:
        sock.close()


def _ping(netns, packet, timeout):
    sock = _socket(netns, packet, socket.SOCK_RAW, ICMP_PROTOCOLS[packet.version])
    request, reply = ECHO[packet.version]
    ident, sequence = int.from_bytes(os.urandom(2), "big"), 1
    header = struct.pack("!BBHHH", request, 0, 0, ident, sequence)
    if packet.version == 4:                # the kernel sums ICMPv6 itself
        header = struct.pack("!BBHHH", request, 0, _checksum(header + PAYLOAD), ident, sequence)
    try:
        try:
            sock.sendto(header + PAYLOAD, (packet.destination, 0))
        except OSError as exc:
            return Observation(False, exc.strerror)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                return _silence(timeout)
            data, address = sock.recvfrom(2048)
            if packet.version == 4:
                data = data[(data[0] & 0x0F) * 4:]          # raw IPv4 sockets see the IP header
            if (len(data) >= 8 and data[0] == reply and struct.unpack("!HH", data[4:8]) == (ident, sequence)
                    and address[0] == packet.destination):
                return Observation(True, "echo reply")
    finally:
        sock.close()


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF

