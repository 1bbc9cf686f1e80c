"""The CNI protocol as pure logic (calicoctl.ops.cni_protocol): requests,
versions, results, prevResult, errors, and the frames between the plugin
binaries and the agent."""
import json

import pytest

from calicoctl.errors import Conflict, DatastoreUnavailable, NotFound
from calicoctl.ops import cni_protocol as protocol
from calicoctl.ops.allocator import AddressRequest

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "default-0123abcd", "CNI_NETNS": "/run/netns/c1",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def config(**changes):
    data = {"cniVersion": "1.0.0", "name": "netA", "type": "calico", "ipam": {"type": "calico-ipam"}}
    data.update(changes)
    return json.dumps(data).encode()


def parse(env_changes=None, plugin="calico", **changes):
    env = dict(ENV, **(env_changes or {}))
    return protocol.parse_request(plugin, {k: v for k, v in env.items() if v is not None}, config(**changes))


def code_of(call):
    with pytest.raises(protocol.CniError) as info:
        call()
    return info.value.code, str(info.value)


def test_an_add_request():
    request = parse()
    assert (request.command, request.version, request.network) == ("ADD", "1.0.0", "netA")
    assert request.attachment == ("default-0123abcd", "eth0") and request.netns == "/run/netns/c1"
    assert request.addresses == (AddressRequest(version=4),)
    assert request.prev_result is None


def test_subnets_and_requested_addresses():
    request = parse(ipam={"type": "calico-ipam", "subnets": ["192.168.5.0/24", "fd80::/64"]})
    assert request.addresses == (AddressRequest(version=4, cidr="192.168.5.0/24"),
                                 AddressRequest(version=6, cidr="fd80::/64"))
    fixed = parse(ipam={"type": "calico-ipam", "subnet": "192.168.5.0/24"},
                  runtimeConfig={"ips": ["192.168.5.9/24"]})
    (wanted,) = fixed.addresses
    assert str(wanted.ip) == "192.168.5.9" and wanted.cidr == "192.168.5.0/24" and not wanted.automatic
    # Podman passes one address in CNI_ARGS; runtimeConfig.ips, when given, wins.
    podman = parse({"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p1;IP=192.168.5.10"})
    assert str(podman.addresses[0].ip) == "192.168.5.10"
    both = parse({"CNI_ARGS": "IP=192.168.5.10"}, runtimeConfig={"ips": ["192.168.5.11/32"]})
    assert str(both.addresses[0].ip) == "192.168.5.11"
    assert parse({"CNI_ARGS": "IgnoreUnknown=1"}).addresses == (AddressRequest(version=4),)


@pytest.mark.parametrize("env, changes, code, words", [
    ({"CNI_COMMAND": "FROB"}, {}, protocol.INVALID_ENVIRONMENT, "CNI_COMMAND"),
    ({"CNI_CONTAINERID": None}, {}, protocol.INVALID_ENVIRONMENT, "CNI_CONTAINERID"),
    ({"CNI_CONTAINERID": "-bad", "CNI_IFNAME": "a/b"}, {}, protocol.INVALID_ENVIRONMENT,
     "CNI_CONTAINERID, CNI_IFNAME"),
    ({"CNI_NETNS": None}, {}, protocol.INVALID_ENVIRONMENT, "CNI_NETNS"),
    ({}, {"cniVersion": "0.3.1"}, protocol.INCOMPATIBLE_VERSION, "0.3.1"),
    ({}, {"cniVersion": None}, protocol.INVALID_CONFIG, "no cniVersion"),
    ({"CNI_COMMAND": "GC"}, {"cni.dev/valid-attachments": []}, protocol.INCOMPATIBLE_VERSION, "1.1.0"),
    ({}, {"name": "bad name"}, protocol.INVALID_CONFIG, "network name"),
    ({}, {"name": None}, protocol.INVALID_CONFIG, "network name"),
    ({}, {"ipam": None}, protocol.INVALID_CONFIG, "no ipam"),
    ({}, {"ipam": {"type": "host-local"}}, protocol.UNSUPPORTED_FIELD, "'host-local'"),
    ({}, {"ipam": {"type": "calico-ipam", "subnet": "nonsense"}}, protocol.INVALID_CONFIG, "nonsense"),
    ({}, {"ipam": {"type": "calico-ipam", "subnets": ["10.0.0.0/8", "10.1.0.0/16"]}}, protocol.INVALID_CONFIG,
     "more than one IPv4"),
    ({}, {"ipam": {"type": "calico-ipam", "subnet": "192.168.5.0/24"}, "runtimeConfig": {"ips": ["10.0.0.1"]}},
     protocol.INVALID_CONFIG, "outside the network's subnet"),
    ({"CNI_ARGS": "IP=banana"}, {}, protocol.INVALID_CONFIG, "Invalid address asked for"),
    ({"CNI_ARGS": "IP=10.0.0.1,10.0.0.2"}, {}, protocol.INVALID_CONFIG, "More than one IPv4"),
    ({}, {"runtimeConfig": {"ips": ["fd80::1"]}}, protocol.INVALID_CONFIG, "no IPv6 subnet"),
    ({}, {"prevResult": {"ips": [{"address": "not-an-ip"}]}}, protocol.INVALID_CONFIG, "prevResult"),
    ({}, {"prevResult": {"ips": [{"address": "10.0.0.1/32", "interface": 3}]}}, protocol.INVALID_CONFIG,
     "interface index"),
])
def test_bad_requests_get_the_spec_codes(env, changes, code, words):
    found, message = code_of(lambda: parse(env, **changes))
    assert found == code and words in message, message


def test_stdin_that_is_not_a_json_object():
    assert code_of(lambda: protocol.parse_request("calico", ENV, b"{nope"))[0] == protocol.DECODING_FAILURE
    assert code_of(lambda: protocol.parse_request("calico", ENV, b"[1]"))[0] == protocol.DECODING_FAILURE
    assert code_of(lambda: protocol.parse_request("calico", ENV, b"\xff"))[0] == protocol.DECODING_FAILURE
    assert code_of(lambda: protocol.parse_request("flannel", ENV, config()))[0] == protocol.INVALID_ENVIRONMENT


def test_del_needs_no_netns_and_gc_needs_its_list():
    assert parse({"CNI_COMMAND": "DEL", "CNI_NETNS": None}).netns is None
    gc = parse({"CNI_COMMAND": "GC", "CNI_CONTAINERID": None}, cniVersion="1.1.0",
               **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]})
    assert gc.valid_attachments == (("c1", "eth0"),)
    # Without the list nothing can be told stale: refused, not "everything".
    assert code_of(lambda: parse({"CNI_COMMAND": "GC"}, cniVersion="1.1.0"))[0] == protocol.INVALID_CONFIG


PREVIOUS = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "br0", "mac": "00:11:22:33:44:55"}],
            "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.1.0.1"]}}


def test_add_appends_to_prev_result_with_our_indexes_shifted():
    request = parse(prevResult=PREVIOUS)
    ours = protocol.Result(
        interfaces=(protocol.Interface("cali0123", "ee:ee:ee:ee:ee:ee"),
                    protocol.Interface("eth0", "02:00:00:00:00:01", "/run/netns/c1")),
        ips=(protocol.IPConfig("192.168.3.4/32", "172.17.8.81", interface=1),),
        routes=protocol.calculate_routes({4: "172.17.8.81"}))
    merged = protocol.render_result(protocol.merge_results(request.prev_result, ours), "1.0.0")
    assert [item["name"] for item in merged["interfaces"]] == ["br0", "cali0123", "eth0"]
    assert merged["ips"][1] == {"address": "192.168.3.4/32", "gateway": "172.17.8.81", "interface": 2}
    assert merged["ips"][0] == PREVIOUS["ips"][0]
    assert merged["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "0.0.0.0/0", "gw": "172.17.8.81"}]
    assert merged["dns"] == PREVIOUS["dns"]
    assert merged["interfaces"][2]["sandbox"] == "/run/netns/c1" and "sandbox" not in merged["interfaces"][1]


def test_results_in_each_version():
    result = protocol.Result(ips=(protocol.IPConfig("fd80::5/128", "fd00::1"),),
                             routes=protocol.calculate_routes({6: "fd00::1"}))
    old = protocol.render_result(result, "0.4.0")
    assert old == {"cniVersion": "0.4.0", "ips": [{"address": "fd80::5/128", "gateway": "fd00::1", "version": "6"}],
                   "routes": [{"dst": "::/0", "gw": "fd00::1"}]}
    new = protocol.render_result(result, "1.1.0")
    assert "version" not in new["ips"][0] and "interfaces" not in new and new["cniVersion"] == "1.1.0"
    # A 0.4.0 prevResult (with "version") reads as any other.
    assert protocol.parse_result(old).ips == result.ips


def test_respond_renders_results_and_errors_in_the_request_version():
    stdin = config(cniVersion="0.4.0")
    status, out = protocol.respond(lambda request: protocol.Result(ips=(protocol.IPConfig("10.0.0.1/32"),)),
                                   "calico", ENV, stdin)
    assert status == 0 and json.loads(out)["ips"] == [{"address": "10.0.0.1/32", "version": "4"}]
    assert protocol.respond(lambda request: None, "calico", ENV, stdin) == (0, b"")
    for exc, code in ((NotFound("no pool"), protocol.INVALID_CONFIG),
                      (DatastoreUnavailable("etcd is down"), protocol.TRY_AGAIN_LATER),
                      (Conflict("odd"), protocol.OTHER_FAILURE),
                      (protocol.CniError(protocol.CHECK_ROUTE, "route gone", "and more"), protocol.CHECK_ROUTE)):
        def fail(request, exc=exc):
            raise exc
        status, out = protocol.respond(fail, "calico", ENV, stdin)
        error = json.loads(out)
        assert status == 1 and error["code"] == code and error["msg"] == str(exc) and error["cniVersion"] == "0.4.0"
    assert json.loads(protocol.respond(fail, "calico", ENV, stdin)[1])["details"] == "and more"
    bugs = []
    status, out = protocol.respond(lambda request: 1 / 0, "calico", ENV, config(cniVersion="9.9.9"), bugs.append)
    # Unsupported versions are refused before any work, in the latest version.
    assert json.loads(out)["code"] == protocol.INCOMPATIBLE_VERSION and json.loads(out)["cniVersion"] == "1.1.0"
    status, out = protocol.respond(lambda request: 1 / 0, "calico", ENV, stdin, bugs.append)
    assert json.loads(out)["code"] == protocol.OTHER_FAILURE and "division by zero" in json.loads(out)["msg"]
    assert len(bugs) == 1


def test_frames_round_trip():
    env = {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1;B=x=y"}
    frame = protocol.encode_request("calico-ipam", env, b'{"x": "\\u0000"}\n')
    assert protocol.decode_request(frame) == ("calico-ipam", env, b'{"x": "\\u0000"}\n')
    assert protocol.decode_request(protocol.encode_request("calico", {}, b"")) == ("calico", {}, b"")
    for bad in (b"", b"12", b"99\nshort", b"x\n"):
        assert code_of(lambda bad=bad: protocol.decode_request(bad))[0] == protocol.IO_FAILURE
    assert protocol.encode_reply(1, b'{"code": 7}', b"log") == b'1 11\n{"code": 7}log'
