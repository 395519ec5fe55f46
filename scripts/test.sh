#!/usr/bin/env bash
# Runs every portcullis test on a fresh Debian machine: installs the system packages
# the tests drive (real clients and servers nobody here wrote), makes sure PostgreSQL
# is up on 127.0.0.1:5432 for the store's second backend, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# swaks needs its Perl TLS and IPv6 modules, which are only Recommends.
packages=(nftables iproute2 socat swaks libnet-ssleay-perl libio-socket-ssl-perl libio-socket-inet6-perl curl python3 freeradius freeradius-utils rbldnsd softflowd postfix sasl2-bin
          postgresql-client chromium chromium-driver openssl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    as_root=(); [[ $(id -u) -eq 0 ]] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    # Package scripts must not start daemons that would hold the ports tests use.
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${as_root[@]}" chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    "${as_root[@]}" rm -f /usr/sbin/policy-rc.d
fi

# PostgreSQL: the store suite runs every test on it too (trust auth, database test).
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    fi
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

# The portal's browser test drives Debian's Chromium with playwright-core (pinned in
# its package-lock.json; no browser download).
if command -v npm >/dev/null; then
    npm ci --silent --no-audit --no-fund --prefix crates/portal/tests/browser
fi

cargo test --workspace "$@"
