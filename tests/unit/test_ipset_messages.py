"""The ipset netlink messages (calicoctl/host/netlink/ipset.py), encoded and
decoded without a kernel; the same requests against the kernel are
tests/functional/test_ipsets_kernel.py."""
import struct

import pytest

from calicoctl.host.netlink import NetlinkPermissionDenied
from calicoctl.host.netlink import ipset

NLMSG_AND_NFGEN = 16 + 4


def entries_of(attrs):
    """(set name, members, line numbers) of one add/delete message's attributes."""
    found = ipset.parse_attrs(attrs)
    name = attrs[found[ipset.ATTR_SETNAME][0]:found[ipset.ATTR_SETNAME][1]].rstrip(b"\0").decode()
    start, end = found[ipset.ATTR_ADT]
    linenos = []
    while start < end:
        length, _ = struct.unpack_from("=HH", attrs, start)
        data = ipset.parse_attrs(attrs, start + 4, start + length)
        linenos.append(struct.unpack_from("=I", attrs, data[ipset.ATTR_LINENO][0])[0])
        start += (length + 3) & ~3
    return name, found[ipset.ATTR_ADT], linenos


@pytest.mark.parametrize("set_type, family, members, listed", [
    ("hash:ip", "inet", ["10.0.0.1", "192.168.7.255"], None),
    ("hash:ip", "inet6", ["fd00::1", "2001:db8::ff:1", "::ffff:1.2.3.4"], None),
    # A host-length prefix is listed without it, as ``ipset save`` prints it.
    ("hash:net", "inet", ["10.0.0.0/8", "192.168.1.7/32", "172.16.0.0/12"],
     ["10.0.0.0/8", "192.168.1.7", "172.16.0.0/12"]),
    ("hash:net", "inet6", ["fd00::/64", "fd01::1"], ["fd00::/64", "fd01::1"]),
])
def test_members_are_encoded_as_the_kernel_lists_them(set_type, family, members, listed):
    (chunk, attrs), = ipset.encode_entry_messages("s", set_type, family, members)
    name, adt, linenos = entries_of(attrs)
    assert name == "s" and chunk == members and linenos == list(range(1, len(members) + 1))
    assert ipset.decode_members(attrs, *adt, family) == (listed or members)


def test_a_large_batch_is_cut_into_messages_numbered_from_one():
    members = ["10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255) for i in range(10000)]
    messages = list(ipset.encode_entry_messages("big", "hash:ip", "inet", members))
    assert len(messages) > 1
    assert all(len(attrs) <= ipset.MAX_MESSAGE + 64 for _, attrs in messages)
    assert [m for chunk, _ in messages for m in chunk] == members
    decoded = []
    for chunk, attrs in messages:
        _, adt, linenos = entries_of(attrs)
        assert linenos == list(range(1, len(chunk) + 1))
        decoded += ipset.decode_members(attrs, *adt, "inet")
    assert decoded == members


@pytest.mark.parametrize("family, member", [("inet", "fd00::1"), ("inet6", "10.0.0.1"), ("inet", "10.0.0.0/33"),
                                            ("inet", "nonsense")])
def test_a_member_of_the_wrong_family_is_refused_before_sending(family, member):
    with pytest.raises(ipset.BadMember) as caught:
        list(ipset.encode_entry_messages("s", "hash:net", family, ["10.1.0.0/16" if family == "inet" else "fd00::/8",
                                                                   member]))
    assert caught.value.member == member


def test_an_error_reply_names_the_refused_member_by_line_number():
    (_, attrs), = ipset.encode_entry_messages("s", "hash:ip", "inet", ["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    request = bytearray(ipset.encode_request(7, ipset.CMD_ADD, attrs, ipset.NLM_F_ACK))
    # What the kernel sends back: the error, then the request with its
    # message-level line number set to the refused entry's.
    lineno_at = ipset.parse_attrs(request, NLMSG_AND_NFGEN)[ipset.ATTR_LINENO][0]
    struct.pack_into("=I", request, lineno_at, 2)
    payload = struct.pack("=i", -(ipset.IPSET_ERR_PRIVATE + 256)) + bytes(request)
    error = ipset.decode_error(ipset.IPSET_ERR_PRIVATE + 256, payload, "cannot add")
    assert error.lineno == 2 and "the set is full" in str(error)
    plain = ipset.decode_error(ipset.IPSET_ERR_PRIVATE + 4, struct.pack("=i", -4100) + bytes(request[:16]), "x")
    assert plain.lineno == 0 and "in use" in str(plain)
    assert isinstance(ipset.decode_error(1, b"", "x"), NetlinkPermissionDenied)
