#!/usr/bin/env bash
# Every benchmark in one command, loopback only (and network namespaces the benches
# create). Installs the peers (Postfix, Cyrus SASL tools, FreeRADIUS, nftables),
# builds in release mode, runs each benchmark in turn and writes BENCHMARKS.md from
# the sections they leave in target/bench-report/, plus bench/submission-throughput.svg.
#
#   bench/run.sh [--quick] [--repeats N] [--only NAME...]
#
# NAME: compare (submission, sessions, relay against Postfix), radius (against
# FreeRADIUS), nft (enforcement), abuse, delivery, import. Figures are medians over
# --repeats runs (default 3; --quick: 1 and smaller sizes). `--only` reruns those
# benchmarks and keeps the other sections of the last run. Needs root (nftables).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
repeats=3
only=()
while (($#)); do
    case $1 in
        --quick) quick=1; repeats=1 ;;
        --repeats) repeats=${2:?--repeats N}; shift ;;
        --only) shift; while (($#)) && [[ $1 != --* ]]; do only+=("$1"); shift; done; continue ;;
        *) echo "usage: bench/run.sh [--quick] [--repeats N] [--only NAME...]" >&2; exit 2 ;;
    esac
    shift
done

packages=(postfix sasl2-bin freeradius freeradius-utils openssl nftables iproute2 postgresql-client strace)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq
    # Package scripts must not start daemons that would hold the ports benches use.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
# 10,000 sessions hold a socket at each end; where the hard limit is lower (a container
# without CAP_SYS_RESOURCE), take what it allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Release builds outside the clone (as .ci/run keeps its own), so a new clone on the
# same machine does not rebuild everything.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/portcullis-release}"

report=$root/target/bench-report
((${#only[@]})) || rm -rf "$report"
mkdir -p "$report"
export PORTCULLIS_BENCH_REPORT_DIR=$report PORTCULLIS_BENCH_REPEATS=$repeats
((quick)) && export PORTCULLIS_BENCH_QUICK=1
quick_arg=(); ((quick)) && quick_arg=(--quick)

# name, then the cargo bench invocation that writes that name's sections.
benches=(
    "compare|cargo bench -p portcullis --bench compare -- ${quick_arg[*]}"
    "radius|cargo bench -p enforce --bench radius -- ${quick_arg[*]}"
    "nft|cargo bench -p enforce --bench nft -- ${quick_arg[*]}"
    "abuse|cargo bench -p abuse --bench throughput -- ${quick_arg[*]}"
    "delivery|cargo bench -p delivery --bench relay -- ${quick_arg[*]}"
    "import|cargo bench -p portcullis --bench import -- ${quick_arg[*]}"
)
selected() {
    ((${#only[@]} == 0)) && return 0
    local n; for n in "${only[@]}"; do [[ $n == "$1" ]] && return 0; done; return 1
}

cargo build --release --locked --benches -p portcullis -p enforce -p abuse -p delivery
failed=()
for entry in "${benches[@]}"; do
    name=${entry%%|*} cmd=${entry#*|}
    selected "$name" || continue
    echo "== $name: $cmd"
    started=$(date +%s)
    if ! $cmd 2>&1 | tee "$report/$name.log"; then
        failed+=("$name")
    fi
    echo "$name took $(($(date +%s) - started)) s"
done

# The header: where and with what these figures were measured.
version() { "$@" 2>/dev/null | head -1 || echo "not installed"; }
{
    echo "# Benchmarks"
    echo
    echo "Made by \`bench/run.sh$( ((quick)) && echo " --quick")$( ((repeats != 3 && !quick)) && echo " --repeats $repeats")\`$( ((${#only[@]})) && echo " (this time --only ${only[*]}; the other sections are from the run before)") on $(date -u +%Y-%m-%d) from commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates bench ':!bench/submission-throughput.svg' || echo ' (with uncommitted changes)'). Figures are medians over $repeats run(s) of each cell; ratios are portcullis / peer, measured in the same run on the same machine. Loopback only."
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| CPU | $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') |"
    echo "| memory | $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) |"
    echo "| kernel | $(uname -r) |"
    echo "| rustc | $(version rustc --version) |"
    echo "| Postfix | $(version postconf -h mail_version) |"
    echo "| FreeRADIUS | $(version freeradius -v | grep -o 'Version [0-9.]*') |"
    echo "| nftables | $(version nft --version) |"
    echo "| PostgreSQL | $(version psql -h 127.0.0.1 -U postgres -d test -tAc 'SHOW server_version') |"
    echo
    if ((${#failed[@]})); then
        echo "**Failed in this run:** ${failed[*]} (see target/bench-report/NAME.log)."
        echo
    fi
    for section in "$report"/*.md; do
        [[ -e $section ]] || continue
        cat "$section"
        echo
    done
} > "$root/BENCHMARKS.md"
echo "wrote BENCHMARKS.md"
((${#failed[@]} == 0)) || { echo "failed: ${failed[*]}" >&2; exit 1; }
