#!/usr/bin/env python3
"""The ``calico`` and ``calico-ipam`` CNI plugin binaries: clients of the node agent.

``calicoctl cni install`` copies this file into the CNI bin directory under
both names, started by the system's python3 in isolated mode (``-I -S``:
no site-packages, no PYTHON* variables), so it can import nothing but the
standard library, and it imports little of that: a plugin is a new process
for every container and command, and each import costs start-up time.
The work needs pyroute2 and an etcd client (about 400 ms to import), so
the node agent, which has them loaded, does it (``calicoctl.ops.cni_plugin``):

- VERSION is answered here;
- anything else goes to the agent's socket (``/var/run/calico/cni.sock``,
  or ``$CALICO_CNI_SOCKET``): this binary's name, the ``CNI_*`` variables
  and stdin, framed as ``calicoctl.ops.cni_protocol`` describes; the
  agent's answer is relayed as it is: stdout, stderr, exit status;
- with no agent answering it fails at once with a CNI error: code 50
  ("not available") for STATUS, 11 ("try again later") for the rest.
"""
import os
import socket
import sys

# The agent's default (calicoctl.identity: RUN_DIR, CNI_SOCKET; a unit test checks).
SOCKET = "/var/run/calico/cni.sock"
SOCKET_VARIABLE = "CALICO_CNI_SOCKET"
# The same as calicoctl.ops.cni_protocol.SUPPORTED_VERSIONS (a unit test checks).
SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
TIMEOUT = 120.0
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50


def main():
    name = os.path.basename(sys.argv[0])
    stdin = sys.stdin.buffer.read()
    command = os.environ.get("CNI_COMMAND", "")
    if command == "VERSION":
        return answer_version(stdin)
    env = {key: value for key, value in os.environ.items() if key.startswith("CNI_")}
    path = os.environ.get(SOCKET_VARIABLE) or SOCKET
    try:
        reply = ask(path, encode_request(name, env, stdin))
    except OSError as exc:
        return fail(stdin, NOT_AVAILABLE if command == "STATUS" else TRY_AGAIN_LATER,
                    "The Calico agent does not answer on %s (%s): is `calicoctl node` running on this host?"
                    % (path, exc.strerror or exc))
    head, newline, rest = reply.partition(b"\n")
    fields = head.split()
    if not newline or len(fields) != 2 or not all(field.isdigit() for field in fields):
        return fail(stdin, TRY_AGAIN_LATER, "The Calico agent on %s sent a malformed answer." % path)
    code, length = int(fields[0]), int(fields[1])
    sys.stdout.buffer.write(rest[:length])
    sys.stderr.buffer.write(rest[length:])
    return code


def encode_request(name, env, stdin):
    """The frame of calicoctl.ops.cni_protocol.decode_request."""
    header = "\0".join([name] + ["%s=%s" % item for item in sorted(env.items())]).encode("utf-8")
    return b"%d\n" % len(header) + header + stdin


def ask(path, request):
    """Send ``request``, read the answer until the agent closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def request_version(stdin):
    import json
    try:
        version = json.loads(stdin.decode("utf-8")).get("cniVersion")
    except (AttributeError, UnicodeDecodeError, ValueError):
        version = None
    return version if isinstance(version, str) and version else SUPPORTED_VERSIONS[-1]


def answer_version(stdin):
    import json
    print(json.dumps({"cniVersion": request_version(stdin), "supportedVersions": list(SUPPORTED_VERSIONS)}))
    return 0


def fail(stdin, code, message):
    import json
    version = request_version(stdin)
    if version not in SUPPORTED_VERSIONS:
        version = SUPPORTED_VERSIONS[-1]
    print(json.dumps({"cniVersion": version, "code": code, "msg": message}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
