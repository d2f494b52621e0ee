#!/usr/bin/env bash
# Installs Debian's prometheus-alertmanager package when its binary is not on PATH, for the
# Alertmanager receiver's test, which starts its own Alertmanager on 127.0.0.1. Prints nothing
# when the binary is already there. Needs root and Debian's package lists.
#
# The package's service would listen on every interface (port 9093), so the install runs with
# a policy-rc.d that keeps services from starting, unless the machine already has one.
set -euo pipefail

if command -v prometheus-alertmanager >/dev/null 2>&1; then
    exit 0
fi

echo "installing prometheus-alertmanager with apt-get (the Alertmanager receiver's test needs it)"
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Added by feedloop scripts/ensure-alertmanager.sh during an install.\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q prometheus-alertmanager
command -v prometheus-alertmanager >/dev/null
