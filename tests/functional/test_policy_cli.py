"""`calicoctl policy explain|matrix` against a real etcd holding the seed
demonstration's cluster (tests/functional/seedworld.py), without probes:
naming parties, the text and JSON answers, and bad input (one line, exit
1, nothing written, nothing sent). Probes are tested on simulated hosts
(tests/system/test_policy_explain.py)."""
import json

import pytest

from calicoctl.datastore import paths
from tests.functional import seedworld
from tests.functional.clitools import assert_ok, assert_refused, run_cli


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    seedworld.write(any_etcd.kv())
    any_etcd.env = dict(any_etcd.env, **seedworld.ENV)
    return any_etcd


def explain(etcd, *words):
    return json.loads(assert_ok(etcd.env, ["policy", "explain"] + list(words) + ["-o", "json"]))


def test_members_of_a_profile_reach_each_other_and_the_steps_say_why(etcd):
    out = assert_ok(etcd.env, "policy explain workload-A 192.168.0.5")
    lines = out.splitlines()
    assert lines[0] == "ALLOWED: ping (ICMP echo request) 192.168.0.1 -> 192.168.0.5"
    assert lines[1] == ("From workload-A (endpoint %s on calico-01) to workload-E (endpoint %s on calico-02)."
                        % (seedworld.endpoint_id("A"), seedworld.endpoint_id("E")))
    assert lines[2].startswith("  1. outbound from workload-A: source 192.168.0.1 and MAC ee:ee:ee:ee:ee:0a")
    assert lines[3] == '  2. outbound from workload-A: profile PROF_A_C_E outbound rule 1 "allow" matches: allowed out'
    assert lines[4] == ('  3. inbound to workload-E: profile PROF_A_C_E inbound rule 1 "allow from tag PROF_A_C_E" '
                        'matches: allowed in')
    assert len(lines) == 5


def test_a_denied_connection_answers_with_exit_0_and_the_deciding_step(etcd):
    result = run_cli(etcd.env, ["policy", "explain", seedworld.endpoint_id("A"), "192.168.0.4", "--protocol=tcp",
                                "--port=80"])
    assert result.rc == 0 and result.err == ""
    assert result.out.startswith("DENIED: tcp 192.168.0.1 -> 192.168.0.4 port 80\n")
    assert result.out.splitlines()[-1].endswith("no profile of endpoint %s accepted it (PROF_D): dropped by default"
                                                % seedworld.endpoint_id("D"))


def test_the_json_answer(etcd):
    answer = explain(etcd, "192.168.0.2", "workload-C", "--protocol=udp", "--port=53")
    assert answer["verdict"] == "denied"
    assert answer["from"] == {"query": "192.168.0.2", "address": "192.168.0.2", "endpoint": seedworld.endpoint_id("B"),
                              "host": "calico-01", "orchestrator": "docker", "workload": seedworld.container_id("B"),
                              "name": "workload-B"}
    assert answer["to"]["name"] == "workload-C" and answer["to"]["address"] == "192.168.0.3"
    assert answer["packet"] == {"ip_version": 4, "source": "192.168.0.2", "destination": "192.168.0.3",
                                "protocol": "udp", "port": 53, "source_port": None}
    assert [(s["side"], s["kind"], s["effect"], s["profile"], s["position"]) for s in answer["steps"]] == [
        ("outbound", "anti-spoofing", "continue", None, None),
        ("outbound", "rule", "allow", "PROF_B", 1),
        ("inbound", "no match", "continue", "PROF_A_C_E", None),
        ("inbound", "default", "deny", None, None)]
    assert answer["probe"] is None


def test_an_address_of_no_workload_and_ipv6_addresses(etcd):
    outside = explain(etcd, "workload-A", "8.8.8.8", "--protocol=tcp", "--port=443")
    assert outside["verdict"] == "allowed" and outside["to"]["endpoint"] is None
    assert outside["steps"][-1]["kind"] == "leaves calico"
    six = explain(etcd, "workload-A", "fd80:24e2:f998:72d6::5")
    assert six["verdict"] == "allowed" and six["packet"]["ip_version"] == 6
    assert six["packet"]["source"] == "fd80:24e2:f998:72d6::1"
    etcd_port = explain(etcd, "workload-A", "172.17.8.102", "--protocol=tcp", "--port=2379")
    assert etcd_port["verdict"] == "denied" and etcd_port["steps"][0]["side"] == "control plane"


def test_the_matrix_is_the_demonstrations(etcd):
    out = assert_ok(etcd.env, "policy matrix")
    lines = out.splitlines()
    assert lines[0] == "Who reaches whom by policy (ping): row to column."
    rows = {line.split()[1]: line.split()[-5:] for line in lines[3:]}
    assert rows == {
        "workload-A": ["-", "no", "yes", "no", "yes"],
        "workload-B": ["no", "-", "no", "no", "no"],
        "workload-C": ["yes", "no", "-", "no", "yes"],
        "workload-D": ["no", "no", "no", "-", "no"],
        "workload-E": ["yes", "no", "yes", "no", "-"]}


def test_a_matrix_of_named_endpoints_in_json(etcd):
    answer = json.loads(assert_ok(etcd.env, ["policy", "matrix", "workload-A", seedworld.endpoint_id("E"),
                                             "192.168.0.4", "--protocol=tcp", "--port=8080", "-o", "json"]))
    assert answer["traffic"] == {"protocol": "tcp", "port": 8080, "source_port": None}
    assert [party["name"] for party in answer["endpoints"]] == ["workload-A", "workload-E", "workload-D"]
    cells = {(c["from"], c["to"]): c for c in answer["cells"]}
    assert len(cells) == 6 and answer["disagreements"] == 0 and answer["probed_hosts"] == []
    a_to_e = cells[seedworld.endpoint_id("A"), seedworld.endpoint_id("E")]
    assert a_to_e["verdict"] == "allowed" and a_to_e["packet"]["destination"] == "192.168.0.5"
    assert a_to_e["decided_by"]["kind"] == "rule" and a_to_e["observed"] is None
    assert cells[seedworld.endpoint_id("A"), seedworld.endpoint_id("D")]["decided_by"]["kind"] == "default"


def test_a_matrix_by_ipv6_address_and_pairs_without_a_common_version(etcd):
    out = assert_ok(etcd.env, ["policy", "matrix", "fd80:24e2:f998:72d6::1", seedworld.endpoint_id("E"), "workload-B"])
    rows = [line.split()[-3:] for line in out.splitlines()[3:]]
    assert rows == [["-", "yes", "-"], ["yes", "-", "no"], ["-", "no", "-"]]


@pytest.mark.parametrize("argv,words", [
    ("policy explain nosuch 192.168.0.2", "nosuch is not a workload address, an endpoint ID or a container"),
    ("policy explain 10.9.9.9 192.168.0.2", "No workload has address 10.9.9.9"),
    ("policy explain workload-D 192.168.0.2", "not a workload address, an endpoint ID or a container"),
    ("policy explain workload-A 192.168.0.2 --port=80", "--port needs --protocol=tcp or udp"),
    ("policy explain workload-A 192.168.0.2 --protocol=icmp --port=80", "--port needs"),
    ("policy explain workload-A 192.168.0.2 --protocol=tcp", "--protocol=tcp needs --port"),
    ("policy explain workload-A 192.168.0.2 --protocol=bogus", "Invalid protocol"),
    ("policy explain workload-B fd80:24e2:f998:72d6::5", "no IP version in common"),
    ("policy matrix workload-A nosuch", "nosuch is not"),
    ("policy explain workload-A 192.168.0.2 -o yaml", "Invalid output format"),
])
def test_bad_input_is_one_line_and_exit_1(etcd, docker_daemon, argv, words):
    assert_refused(etcd, argv, contains=words)


def test_ambiguous_names_are_refused(etcd):
    kv = etcd.kv()
    duplicate = json.loads(kv.get(paths.endpoint_key("calico-02", "docker", seedworld.container_id("D"),
                                                     seedworld.endpoint_id("D"))).value)
    kv.put(paths.endpoint_key("calico-02", "docker", "f" * 64, seedworld.endpoint_id("A")), json.dumps(duplicate))
    kv.put(paths.endpoint_key("calico-01", "docker", seedworld.container_id("C"), "second"),
           json.dumps(dict(duplicate, name="calisecond", ipv4_nets=["192.168.0.9/32"])))
    assert_refused(etcd, ["policy", "explain", seedworld.endpoint_id("A"), "192.168.0.2"],
                   contains="is on several hosts")
    assert_refused(etcd, "policy explain workload-B 192.168.0.4", contains="held by several endpoints")
    assert_refused(etcd, "policy explain workload-C 192.168.0.2", contains="has several endpoints")


def test_what_cannot_be_probed_is_refused_before_anything_is_sent(etcd):
    assert_refused(etcd, ["policy", "explain", seedworld.endpoint_id("E"), "192.168.0.1", "--probe"],
                   contains="--probe sends from workload-E's namespace, so it runs on its host calico-02")
    assert_refused(etcd, "policy explain workload-A 192.168.0.3 --protocol=47 --probe",
                   contains="--probe sends ping, TCP or UDP only")


def test_a_port_the_connection_does_not_pin_down_is_asked_for(etcd):
    rules = {"id": "PROF_D", "inbound_rules": [{"action": "allow", "protocol": "tcp", "src_ports": ["40000:50000"]}],
             "outbound_rules": [{"action": "allow"}]}
    etcd.kv().put(paths.profile_rules("PROF_D"), json.dumps(rules))
    assert_refused(etcd, "policy explain workload-A 192.168.0.4 --protocol=tcp --port=80",
                   contains="depends on the source port")
    answer = explain(etcd, "workload-A", "192.168.0.4", "--protocol=tcp", "--port=80", "--source-port=45000")
    assert answer["verdict"] == "allowed" and answer["packet"]["source_port"] == 45000
    assert_refused(etcd, "policy matrix --protocol=tcp --port=80", contains="From workload-A to workload-D")
