"""What ``policy explain`` and ``policy matrix`` print with probes (pure):
observed beside predicted, and the cells where they differ marked."""
from calicoctl.cli import policy as cli
from calicoctl.host.probe import Observation
from calicoctl.ops import explain as ops
from calicoctl.policy_eval import Traffic
from tests.unit.test_policy_eval import World


def world():
    w = World()
    w.profile("P")
    w.profile("Q")
    ids = [w.endpoint("h1", "192.168.0.1", ["P"]), w.endpoint("h1", "192.168.0.2", ["P"]),
           w.endpoint("h2", "192.168.0.3", ["Q"])]
    cluster = w.cluster()
    parties = [ops.Party(endpoint_id, endpoint=[e for e in cluster.endpoints if e.endpoint_id == endpoint_id][0],
                         name="load%d" % number) for number, endpoint_id in enumerate(ids, 1)]
    return cluster, parties


def test_a_probed_explanation_says_whether_the_kernel_agrees():
    cluster, (a, b, _) = world()
    verdict = ops.evaluate(cluster, a, b, Traffic())
    agreeing = ops.Verdict(a, b, verdict.explanation, Observation(True, "echo reply"))
    assert cli.render_verdict(agreeing)[-1] == "Probe: reached (echo reply), as the policy says."
    assert cli.verdict_to_dict(agreeing)["probe"] == {"reached": True, "detail": "echo reply", "agrees": True}
    differing = ops.Verdict(a, b, verdict.explanation, Observation(False, "no answer within 0.5 s"))
    assert differing.agrees is False
    assert cli.render_verdict(differing)[-1] == ("Probe: not reached (no answer within 0.5 s), but the policy says "
                                                 "ALLOWED: the kernel DISAGREES.")


def test_a_probed_matrix_marks_differences_and_rows_it_could_not_probe():
    cluster, parties = world()
    verdicts = []
    for source in parties:
        for destination in parties:
            if source is destination:
                continue
            verdict = ops.evaluate(cluster, source, destination, Traffic())
            if source.endpoint.key.hostname == "h1":
                # The kernel lets load1 reach everyone: load1 -> load3 differs.
                reached = verdict.explanation.allowed or source.name == "load1"
                verdict = ops.Verdict(source, destination, verdict.explanation, Observation(reached, ""))
            verdicts.append(verdict)
    matrix = ops.Matrix(tuple(parties), tuple(verdicts), ("h1",))
    lines = cli.render_matrix(matrix, Traffic())
    assert lines[1] == "Rows of workloads on h2 are not probed (probes start on the source's host)."
    rows = {line.split()[1]: line.split()[4:] for line in lines[4:7]}
    assert rows == {"load1": ["-", "yes/yes", "yes/no", "!"], "load2": ["yes/yes", "-", "no/no"],
                    "load3": ["no", "no", "-"]}
    assert lines[-1] == "The kernel disagrees with the policy in 1 cell(s)."
    assert cli.matrix_to_dict(matrix, Traffic())["disagreements"] == 1
