"""IP sets through the kernel's own interface: netfilter netlink, ipset subsystem.

``IpsetSocket`` speaks the protocol the ``ipset`` tool speaks (the kernel's
``uapi/linux/netfilter/ipset/ip_set.h``), from this process: creating,
filling, emptying, swapping, destroying and listing ``hash:ip`` and
``hash:net`` sets costs no fork and exec, and a batch of members costs
about what ``ipset restore`` costs the kernel (docs/scale.md, "IP sets
without a process").

The messages
~~~~~~~~~~~~
A request is a netlink header (type ``NFNL_SUBSYS_IPSET << 8 | command``),
an ``nfgenmsg`` and attributes; every request carries the protocol version
and, but for a listing, asks for an acknowledgement, read before the next
request is sent (so replies never pile up in the socket). Adds and deletes
are sent as ``ipset restore`` sends them: one message per set carrying an
``IPSET_ATTR_ADT`` nest with one ``IPSET_ATTR_DATA`` nest per member, each
numbered (``IPSET_ATTR_LINENO``), up to ``MAX_MESSAGE`` bytes a message.
Without ``NLM_F_EXCL`` the kernel treats adding a member that is there, or
deleting one that is not, as done (``ipset -exist``), and creating a set
that exists with the same type and size too. When one member fails, the
kernel stops at it (those before it are applied) and answers with the
message's line number set to the member's: the error names it.

Addresses and sizes go in network byte order and say so
(``NLA_F_NET_BYTEORDER``); the kernel refuses them otherwise.
"""
import errno
import os
import socket
import struct
from dataclasses import dataclass, field

from calicoctl.host.netlink.errors import NetlinkError, NetlinkPermissionDenied
from calicoctl.host.netlink.netns import entered_netns

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10            # acknowledgements without a copy of the request

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = 0x3FFF

NFNL_SUBSYS_IPSET = 6
IPSET_PROTOCOL = 7
IPSET_MAXNAMELEN = 32           # with the terminating NUL

CMD_CREATE, CMD_DESTROY, CMD_FLUSH = 2, 3, 4
CMD_SWAP, CMD_LIST, CMD_ADD, CMD_DEL, CMD_TYPE = 6, 7, 9, 10, 13

# Attributes of a request.
ATTR_PROTOCOL, ATTR_SETNAME, ATTR_TYPENAME, ATTR_REVISION, ATTR_FAMILY = 1, 2, 3, 4, 5
ATTR_SETNAME2 = ATTR_TYPENAME
ATTR_DATA, ATTR_ADT, ATTR_LINENO = 7, 8, 9
# Inside IPSET_ATTR_DATA.
ATTR_IP, ATTR_CIDR, ATTR_MAXELEM = 1, 3, 19
# Inside IPSET_ATTR_IP.
ATTR_IPADDR_IPV4, ATTR_IPADDR_IPV6 = 1, 2

FAMILIES = {"inet": (2, socket.AF_INET, ATTR_IPADDR_IPV4, 32),
            "inet6": (10, socket.AF_INET6, ATTR_IPADDR_IPV6, 128)}
"""family name -> (NFPROTO_*, AF_*, address attribute, host prefix length)."""
FAMILY_NAMES = {number: name for name, (number, _, _, _) in FAMILIES.items()}
NET_TYPES = ("hash:net",)
"""Set types whose members carry a prefix length (``10.0.0.0/8``)."""

MAX_MESSAGE = 64 * 1024
"""Bytes of members per add/delete message (the socket's send buffer holds
about 200 KiB); 64 KiB is 2,700 IPv4 or 1,800 IPv6 addresses."""
RECV_SIZE = 256 * 1024
REPLY_TIMEOUT = 30.0
"""Seconds to wait for the kernel's answer (it never takes more than a
fraction of one; this only keeps a lost reply from hanging the agent)."""

IPSET_ERR_PRIVATE = 4096
ERROR_TEXTS = {
    errno.ENOENT: "the set does not exist",
    errno.EEXIST: "a set of another type or size has that name",
    IPSET_ERR_PRIVATE + 1: "the kernel does not speak this ipset protocol",
    IPSET_ERR_PRIVATE + 2: "the kernel does not have this set type",
    IPSET_ERR_PRIVATE + 3: "no room for more sets",
    IPSET_ERR_PRIVATE + 4: "in use by a kernel component (an iptables rule)",
    IPSET_ERR_PRIVATE + 5: "the second set does not exist",
    IPSET_ERR_PRIVATE + 6: "the sets' types differ",
    IPSET_ERR_PRIVATE + 8: "invalid prefix length",
    IPSET_ERR_PRIVATE + 10: "the set type does not take this address family",
    IPSET_ERR_PRIVATE + 12: "in use",
    IPSET_ERR_PRIVATE + 13: "an IPv4 address was expected",
    IPSET_ERR_PRIVATE + 14: "an IPv6 address was expected",
    IPSET_ERR_PRIVATE + 256: "the set is full",
    IPSET_ERR_PRIVATE + 257: "a null address cannot be stored",
}

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")
_ERROR = struct.Struct("=i")
_U32 = struct.Struct("=I")
_BE32 = struct.Struct(">I")


class IpsetError(NetlinkError):
    """The kernel refused an ipset request.

    :ivar errno: the kernel's code (``IPSET_ERR_*`` codes are above 4096).
    :ivar member: the member it refused, for an add or delete that got that far.
    :ivar lineno: that member's number in the refused message (0: none).
    """

    def __init__(self, message, error_number=None, member=None, lineno=0):
        super().__init__(message, error_number)
        self.member = member
        self.lineno = lineno


@dataclass
class IpsetInfo:
    """A set as listed: its name, type (``hash:ip``), family (``inet``) and members."""
    name: str
    set_type: str
    family: str
    members: set = field(default_factory=set)


# -- encoding (pure) ------------------------------------------------------------------

def _attr(kind, value):
    length = _NLA.size + len(value)
    return _NLA.pack(length, kind) + value + bytes(-length % 4)


def _nest(kind, *children):
    return _attr(kind | NLA_F_NESTED, b"".join(children))


def _string(kind, text):
    value = text.encode() + b"\0"
    if len(value) > IPSET_MAXNAMELEN:
        raise IpsetError("%r: longer than %d characters" % (text, IPSET_MAXNAMELEN - 1))
    return _attr(kind, value)


def _u8(kind, value):
    return _attr(kind, bytes((value,)))


def encode_request(seq, command, attrs, flags):
    """A whole ipset request: netlink header, nfgenmsg, protocol version, ``attrs``."""
    body = _NFGENMSG.pack(socket.AF_INET, 0, 0) + _u8(ATTR_PROTOCOL, IPSET_PROTOCOL) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_IPSET << 8) | command,
                          NLM_F_REQUEST | flags, seq, 0) + body


def encode_entry_messages(name, set_type, family, members):
    """Yield (members, attributes) of each add or delete message ``members``
    need: up to ``MAX_MESSAGE`` bytes each, numbered from 1 in each message.

    Raises BadMember for a member that is not an address of ``family``.
    """
    packer = EntryPacker(set_type, family)
    head = _string(ATTR_SETNAME, name) + _attr(ATTR_LINENO, _U32.pack(0))
    per_message = max(1, MAX_MESSAGE // packer.size)
    members = list(members)
    for first in range(0, len(members), per_message):
        chunk = members[first:first + per_message]
        entries = [packer.pack(member, lineno) for lineno, member in enumerate(chunk, 1)]
        yield chunk, head + _nest(ATTR_ADT, *entries)


class BadMember(ValueError):
    """A member that is not an address (or network) of the set's family."""

    def __init__(self, member, reason):
        super().__init__(reason)
        self.member = member


class EntryPacker:
    """Encodes members of one set as the ``IPSET_ATTR_DATA`` nests of an add or delete.

    The layout is fixed per family and type, so one ``struct`` call packs a
    member (a 100,000-member batch is encoded in a few tens of ms).
    """

    def __init__(self, set_type, family):
        if family not in FAMILIES:
            raise BadMember(None, "unknown address family %r" % family)
        _, self._af, address_attr, self._host_bits = FAMILIES[family]
        self._with_prefix = set_type in NET_TYPES
        size = 4 if self._af == socket.AF_INET else 16
        address_len = _NLA.size + size
        ip_len = _NLA.size + address_len
        prefix_len = 8 if self._with_prefix else 0
        data_len = _NLA.size + ip_len + prefix_len + 8
        layout = "=HHHHHH%ds" % size + ("HHB3x" if self._with_prefix else "") + "HHI"
        self._struct = struct.Struct(layout)
        self._head = (data_len, ATTR_DATA | NLA_F_NESTED, ip_len, ATTR_IP | NLA_F_NESTED,
                      address_len, address_attr | NLA_F_NET_BYTEORDER)
        self.size = self._struct.size
        """Bytes per member."""

    def pack(self, member, lineno):
        """The DATA nest of ``member``; raises BadMember if it is not an address (or network)."""
        try:
            if not self._with_prefix:
                return self._struct.pack(*self._head, socket.inet_pton(self._af, member),
                                         8, ATTR_LINENO, lineno)
            address, _, prefix = member.partition("/")
            bits = int(prefix) if prefix else self._host_bits
            if not 0 <= bits <= self._host_bits:
                raise ValueError(prefix)
            return self._struct.pack(*self._head, socket.inet_pton(self._af, address),
                                     5, ATTR_CIDR, bits, 8, ATTR_LINENO, lineno)
        except (OSError, ValueError, TypeError):
            raise BadMember(member, "not an %s %s" % ("IPv4" if self._af == socket.AF_INET else "IPv6",
                                                      "network" if self._with_prefix else "address")) from None


# -- decoding (pure) --------------------------------------------------------------------

def parse_attrs(data, start=0, end=None):
    """{attribute type: (value start, value end)} of the attributes in data[start:end]."""
    end = len(data) if end is None else end
    found = {}
    while start + 4 <= end:
        length, kind = _NLA.unpack_from(data, start)
        if length < 4:
            break
        found[kind & NLA_TYPE_MASK] = (start + 4, start + length)
        start += (length + 3) & ~3
    return found


def _text(data, span):
    return bytes(data[span[0]:span[1]]).split(b"\0", 1)[0].decode()


def decode_members(data, start, end, family):
    """The members in an ``IPSET_ATTR_ADT`` nest (data[start:end]), as ``ipset
    save`` prints them: ``10.0.0.1``, or ``10.0.0.0/8`` for a network.

    Written out rather than through ``parse_attrs``: a resync lists every
    member of every set of ours, 100,000 of them in about 0.1 s.
    """
    _, af, _, host_bits = FAMILIES[family]
    members = []
    while start + 4 <= end:
        length, _ = _NLA.unpack_from(data, start)
        if length < 4:
            break
        address, bits = None, host_bits
        position, entry_end = start + 4, start + length
        while position + 4 <= entry_end:
            attr_length, kind = _NLA.unpack_from(data, position)
            if attr_length < 4:
                break
            kind &= NLA_TYPE_MASK
            if kind == ATTR_IP:
                inner_length, _ = _NLA.unpack_from(data, position + 4)
                address = socket.inet_ntop(af, data[position + 8:position + 4 + inner_length])
            elif kind == ATTR_CIDR:
                bits = data[position + 4]
            position += (attr_length + 3) & ~3
        if address is not None:
            members.append(address if bits == host_bits else "%s/%d" % (address, bits))
        start += (length + 3) & ~3
    return members


def describe_error(code):
    return ERROR_TEXTS.get(code) or (os.strerror(code) if code < IPSET_ERR_PRIVATE
                                     else "kernel ipset error %d" % code)


def decode_error(code, payload, what):
    """The exception for an error reply (``payload``: after the netlink header).

    An add or delete refused at one member comes back as a copy of the
    request whose ``IPSET_ATTR_LINENO`` is that member's number: it goes in
    ``lineno``.
    """
    if code == errno.EPERM:
        return NetlinkPermissionDenied("ipset: %s: operation not permitted (run as root)." % what)
    lineno = 0
    echoed = _ERROR.size + _NLMSGHDR.size + _NFGENMSG.size
    if len(payload) > echoed:
        attrs = parse_attrs(payload, echoed)
        if ATTR_LINENO in attrs:
            lineno = _U32.unpack_from(payload, attrs[ATTR_LINENO][0])[0]
    return IpsetError("%s: %s" % (what, describe_error(code)), code, lineno=lineno)


# -- the socket --------------------------------------------------------------------------

class IpsetSocket:
    """A netfilter netlink socket for ipset requests in one network namespace.

    A context manager; the socket is closed on exit. Every request raises
    IpsetError when the kernel refuses it.

    :param netns: the namespace's path (``/proc/<pid>/ns/net``), None for the caller's.
    """

    def __init__(self, netns=None):
        where = "in %s" % netns if netns else "in this network namespace"
        try:
            with entered_netns(netns):
                self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                           NETLINK_NETFILTER)
        except OSError as exc:
            raise NetlinkError("Cannot open an ipset netlink socket %s: %s." % (where, exc.strerror),
                               exc.errno) from None
        self._sock.bind((0, 0))
        self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self._sock.settimeout(REPLY_TIMEOUT)
        self._seq = 0
        self._revisions = {}

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- requests -------------------------------------------------------------------
    def create(self, name, set_type, family, maxelem=None):
        """Create a set; a set of that name, type, family and size already there is fine.

        :param maxelem: the most members it may hold (None: the kernel's default, 65536).
        """
        if family not in FAMILIES:
            raise IpsetError("%s: unknown address family %r" % (name, family))
        number = FAMILIES[family][0]
        options = b"" if maxelem is None else _attr(ATTR_MAXELEM | NLA_F_NET_BYTEORDER, _BE32.pack(maxelem))
        self._call(CMD_CREATE, _string(ATTR_SETNAME, name) + _string(ATTR_TYPENAME, set_type)
                   + _u8(ATTR_REVISION, self._revision(set_type, number)) + _u8(ATTR_FAMILY, number)
                   + _nest(ATTR_DATA, options), "cannot create %s (%s %s)" % (name, set_type, family))

    def add(self, name, set_type, family, members):
        """Add ``members`` (members already there are fine)."""
        self._entries(CMD_ADD, name, set_type, family, members)

    def delete(self, name, set_type, family, members):
        """Delete ``members`` (members not there are fine)."""
        self._entries(CMD_DEL, name, set_type, family, members)

    def flush(self, name):
        self._call(CMD_FLUSH, _string(ATTR_SETNAME, name), "cannot flush %s" % name)

    def swap(self, name, other):
        """Exchange the names of two sets of the same type (a rule using one keeps its name)."""
        self._call(CMD_SWAP, _string(ATTR_SETNAME, name) + _string(ATTR_SETNAME2, other),
                   "cannot swap %s and %s" % (name, other))

    def destroy(self, name):
        """Destroy a set (none of that name is fine). Raises IpsetError when in use."""
        self._call(CMD_DESTROY, _string(ATTR_SETNAME, name), "cannot destroy %s" % name)

    def list(self, wanted=lambda name: True):
        """{name: IpsetInfo} of the sets ``wanted(name)`` accepts (one dump of all sets;
        the members of the others are not decoded)."""
        sets = {}
        for payload in self._dump(CMD_LIST, b""):
            attrs = parse_attrs(payload, _NFGENMSG.size)
            if ATTR_SETNAME not in attrs:
                continue
            name = _text(payload, attrs[ATTR_SETNAME])
            if not wanted(name):
                continue
            info = sets.get(name)
            if info is None:
                family = FAMILY_NAMES.get(payload[attrs[ATTR_FAMILY][0]], "unknown")
                info = sets[name] = IpsetInfo(name, _text(payload, attrs[ATTR_TYPENAME]), family)
            if ATTR_ADT in attrs and info.family in FAMILIES:
                info.members.update(decode_members(payload, *attrs[ATTR_ADT], info.family))
        return sets

    # -- internals ------------------------------------------------------------------
    def _revision(self, set_type, family_number):
        """The newest revision of ``set_type`` the kernel has (asked once per socket)."""
        key = (set_type, family_number)
        if key not in self._revisions:
            replies = self._call(CMD_TYPE, _string(ATTR_TYPENAME, set_type) + _u8(ATTR_FAMILY, family_number),
                                 "set type %s" % set_type)
            attrs = parse_attrs(replies[0], _NFGENMSG.size) if replies else {}
            if ATTR_REVISION not in attrs:
                raise IpsetError("set type %s: the kernel did not say its revision" % set_type)
            self._revisions[key] = replies[0][attrs[ATTR_REVISION][0]]
        return self._revisions[key]

    def _entries(self, command, name, set_type, family, members):
        """Add or delete members in as many messages as they need."""
        verb, preposition = ("add", "to") if command == CMD_ADD else ("delete", "from")
        try:
            for chunk, attrs in encode_entry_messages(name, set_type, family, members):
                try:
                    self._call(command, attrs, "")
                except IpsetError as exc:
                    member = chunk[exc.lineno - 1] if 0 < exc.lineno <= len(chunk) else None
                    what = "%s %s" % (member, preposition) if member is not None else preposition
                    raise IpsetError("cannot %s %s %s: %s" % (verb, what, name, describe_error(exc.errno)),
                                     exc.errno, member) from None
        except BadMember as exc:
            raise IpsetError("cannot %s %r %s %s: %s" % (verb, exc.member, preposition, name, exc),
                             member=exc.member) from None

    def _send(self, command, attrs, flags):
        self._seq += 1
        try:
            self._sock.send(encode_request(self._seq, command, attrs, flags))
        except OSError as exc:
            raise IpsetError("cannot send an ipset request: %s" % exc.strerror, exc.errno) from None
        return self._seq

    def _messages(self, seq):
        """Yield (type, payload) of the replies to request ``seq``, one datagram at a time."""
        while True:
            try:
                data = self._sock.recv(RECV_SIZE)
            except OSError as exc:     # socket.timeout included
                raise IpsetError("no answer from the kernel's ipset: %s" % (exc.strerror or exc)) from None
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, msg_seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                if msg_seq == seq:
                    yield kind, data[offset + _NLMSGHDR.size:offset + length]
                offset += (length + 3) & ~3

    def _call(self, command, attrs, what):
        """Send one request, wait for its acknowledgement; the data replies before it.

        Raises IpsetError (``lineno`` set to the refused entry's number when
        the kernel gave one).
        """
        seq = self._send(command, attrs, NLM_F_ACK)
        replies = []
        for kind, payload in self._messages(seq):
            if kind != NLMSG_ERROR:
                replies.append(payload)
                continue
            code = -_ERROR.unpack_from(payload)[0]
            if code == 0:
                return replies
            raise decode_error(code, payload, what)

    def _dump(self, command, attrs):
        seq = self._send(command, attrs, NLM_F_DUMP)
        for kind, payload in self._messages(seq):
            if kind == NLMSG_DONE:
                code = -_ERROR.unpack_from(payload)[0] if len(payload) >= 4 else 0
                if code:
                    raise decode_error(code, payload, "cannot list the sets")
                return
            if kind == NLMSG_ERROR:
                raise decode_error(-_ERROR.unpack_from(payload)[0], payload, "cannot list the sets")
            yield payload
