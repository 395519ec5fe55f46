#!/usr/bin/env bash
# Every benchmark in one command: installs the peers (Postfix, Cyrus SASL tools,
# FreeRADIUS), builds in release mode, runs the comparisons and writes BENCHMARKS.md
# and bench/submission-throughput.svg. Loopback only. `--quick` for a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(postfix sasl2-bin freeradius freeradius-utils openssl nftables)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
ulimit -n 65536 || true
cargo bench -p portcullis --bench compare -- "$@"
