"""`--output=json` against a real etcd holding the seed demonstration's
cluster (tests/functional/seedworld.py): every example of
docs/json-output.md is run, and its document must have exactly the fields
(and types) the example shows; errors stay one line on stderr."""
import json
import os
import re
import shlex

import pytest

from tests.functional import seedworld
from tests.functional.clitools import assert_refused, run_cli
from tests.harness.util import REPO_ROOT

DOC = os.path.join(REPO_ROOT, "docs", "json-output.md")
HEADING_RE = re.compile(r"^### `calicoctl ([^`]*)`$")
# The show and report commands, by their words (the list, and bgp node-mesh).
COMMANDS = {"status", "profile show", "profile rule show", "profile tag show", "endpoint show",
            "endpoint profile show", "pool show", "bgp peer show", "node bgp peer show", "bgp default-node-as",
            "bgp node-mesh", "control-plane show", "container endpoint-id show", "ipam show", "policy explain",
            "policy matrix", "version"}


def examples():
    """(command, document) of each "### `calicoctl ...`" heading and the JSON block under it."""
    found, command, block = [], None, None
    with open(DOC) as handle:
        for line in handle.read().splitlines():
            heading = HEADING_RE.match(line)
            if heading:
                command = heading.group(1)
            elif line == "```json" and command is not None:
                block = []
            elif line == "```" and block is not None:
                found.append((command, json.loads("\n".join(block))))
                command, block = None, None
            elif block is not None:
                block.append(line)
    return found


def words(command):
    """The command's fixed words: 'profile PROF_A_C_E rule show -o json' -> 'profile rule show'."""
    known = {"status", "profile", "show", "rule", "tag", "endpoint", "pool", "bgp", "peer", "node",
             "default-node-as", "node-mesh", "control-plane", "container", "endpoint-id", "ipam", "policy",
             "explain", "matrix", "version"}
    return " ".join(word for word in command.split() if word in known)


def differences(documented, actual, where="$"):
    """Where ``actual`` does not have the fields and types of ``documented``
    (null on either side says nothing; a documented list shows one entry)."""
    if documented is None or actual is None:
        return []
    if isinstance(documented, dict):
        if not isinstance(actual, dict):
            return ["%s: an object in the docs, %r here" % (where, actual)]
        found = []
        if set(documented) != set(actual):
            found.append("%s: fields %s in the docs, %s here" % (where, sorted(documented), sorted(actual)))
        for key in set(documented) & set(actual):
            found += differences(documented[key], actual[key], "%s.%s" % (where, key))
        return found
    if isinstance(documented, list):
        if not isinstance(actual, list):
            return ["%s: a list in the docs, %r here" % (where, actual)]
        if not documented:
            return []
        return [line for index, item in enumerate(actual)
                for line in differences(documented[0], item, "%s[%d]" % (where, index))]
    kinds = (bool, int, float, str)
    documented_kind = next(kind for kind in kinds if isinstance(documented, kind))
    if documented_kind in (int, float) and not isinstance(actual, bool) and isinstance(actual, (int, float)):
        return []
    if not isinstance(actual, documented_kind) or isinstance(actual, bool) != isinstance(documented, bool):
        return ["%s: %r in the docs, %r here" % (where, documented, actual)]
    return []


@pytest.fixture
def etcd(any_etcd):
    """Every test here runs on etcd v2 and on v3 (an etcd without the v2 API)."""
    seedworld.write(any_etcd.kv())
    any_etcd.env = dict(any_etcd.env, **seedworld.ENV)
    return any_etcd


def test_every_show_command_has_a_documented_example():
    assert {words(command) for command, _ in examples()} == COMMANDS


@pytest.mark.parametrize("command,documented", examples(), ids=[command for command, _ in examples()])
def test_each_command_prints_the_documented_fields(etcd, command, documented):
    result = run_cli(etcd.env, shlex.split(command))
    assert (result.rc, result.err) == (0, ""), result.err
    assert result.out.count("\n") == result.out.rstrip("\n").count("\n") + 1      # one document
    assert differences(documented, json.loads(result.out)) == []


@pytest.mark.parametrize("argv,rc,words", [
    ("profile NOPE tag show -o json", 1, "not found"),
    ("profile NOPE rule show --output=json", 1, "not found"),
    ("endpoint nosuch profile show -o json", 1, "not found"),
    ("pool show -o yaml", 1, "Invalid output format 'yaml'"),
    ("ipam show --ip=300.1.1.1 -o json", 1, "Invalid IP address"),
])
def test_errors_stay_one_line_on_stderr(etcd, argv, rc, words):
    assert_refused(etcd, argv, rc=rc, contains=words)


def test_an_unreachable_etcd_is_exit_3_with_nothing_on_stdout():
    env = dict(seedworld.ENV, ETCD_AUTHORITY="127.0.0.1:1")
    for argv in ("pool show -o json", "policy matrix -o json", "ipam show -o json"):
        result = run_cli(env, argv)
        assert (result.rc, result.out) == (3, ""), argv
        assert len(result.err_lines) == 1
