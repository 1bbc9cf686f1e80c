#!/usr/bin/env bash
# Install what building, testing and demonstrating this project needs on a
# Debian 12 machine, as root: the Debian packages (etcd, Docker, BIRD 2,
# iptables, ipset, ...) and the Python virtualenv .venv with pinned deps.
#
# Idempotent and quiet: packages already installed are not touched (no
# `apt-get update` unless something is missing), and pip runs only when
# setup.py or requirements-test.txt changed since the last successful run.
# On failure the failing step's full output is printed and the exit is non-zero.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
    etcd-server etcd-client docker.io bird2 iptables ipset iproute2 nftables
    busybox-static iperf3 netcat-openbsd containernetworking-plugins podman openssl
    procps util-linux python3-venv kmod iputils-ping
)
PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.deps-installed

POLICY_RC=/usr/sbin/policy-rc.d
POLICY_CREATED=""

remove_policy() {
    if [ -n "$POLICY_CREATED" ]; then
        rm -f "$POLICY_RC"
        POLICY_CREATED=""
    fi
}

say() { echo "install-deps: $*" >&2; }

# Run a command with its output kept in a log that is shown only on failure.
quietly() {
    local log rc=0
    log=$(mktemp)
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$log" >&2
        rm -f "$log"
        say "FAILED (exit $rc): $*"
        exit "$rc"
    fi
    rm -f "$log"
}

missing_packages() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            echo "$pkg"
        fi
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "must run as root to install: ${missing[*]}"
        exit 2
    fi
    say "installing ${missing[*]}"
    # Keep package scripts from starting services (etcd on :2379, dockerd):
    # the tests and the demo start their own, by PID.
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_CREATED=1
        trap remove_policy EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    quietly apt-get update
    quietly apt-get install -y --no-install-recommends "${missing[@]}"
    remove_policy
    mapfile -t missing < <(missing_packages)
    if [ "${#missing[@]}" -ne 0 ]; then
        say "still missing after apt-get install: ${missing[*]}"
        exit 1
    fi
}

venv_works() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1
}

install_venv() {
    if ! venv_works; then
        rm -rf "$VENV"
        say "creating $VENV"
        quietly "$PYTHON" -m venv "$VENV"
    fi
    if [ -f "$STAMP" ] && [ "$STAMP" -nt setup.py ] && [ "$STAMP" -nt requirements-test.txt ]; then
        return 0
    fi
    say "installing Python packages into $VENV"
    rm -f "$STAMP"
    quietly "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e . -r requirements-test.txt
    # docopt-ng replaced docopt 0.6.2 (same module name): a venv made
    # before the switch must not keep the old one beside it.
    if "$VENV/bin/python" -m pip show --disable-pip-version-check docopt >/dev/null 2>&1; then
        quietly "$VENV/bin/python" -m pip uninstall --quiet --disable-pip-version-check -y docopt
    fi
    touch "$STAMP"
}

install_packages
install_venv
