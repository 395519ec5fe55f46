#!/usr/bin/env bash
# Where one session's time goes, message by message: runs the compare bench's
# one-session submission cell for one size (default 100 KB) under `perf record` of
# syscall tracepoints, and prints for every process that flushed once per message
# (portcullis and the floor; Postfix spreads its flushes over several cleanup
# processes) the median and mean of
#   cycle  from one message's flush to the next one's (the rate's inverse),
#   flush  the fdatasync itself,
#   work   from the last bytes read before the flush to the flush (what the server
#          does between the end of the body and making it durable).
# The rest of a cycle is the client's round trips, the body on the wire and
# whatever else shares the two cores. Needs root, perf and a release build
# (bench/run.sh, or `cargo bench -p portcullis --bench compare --no-run`).
#
#   bench/phases.sh [SIZE_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-102400}
command -v perf >/dev/null || { echo "phases.sh needs perf (apt-get install linux-perf)" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-/var/tmp/portcullis-release}
bench=$(ls -t "$target"/release/deps/compare-* | grep -v '\.d$' | head -1)
data=$(mktemp -d /var/tmp/portcullis-phases.XXXXXX)
trap 'rm -rf "$data"; git checkout -q bench/submission-throughput.svg BENCHMARKS.md 2>/dev/null || true' EXIT

(cd crates/portcullis && COMPARE_BENCH_ONLY_SUBMISSION=1 COMPARE_BENCH_SIZES=$size COMPARE_BENCH_SESSIONS=1 \
    PORTCULLIS_BENCH_REPEATS=1 perf record -q -a -o "$data/perf.data" \
    -e syscalls:sys_enter_fdatasync -e syscalls:sys_exit_fdatasync \
    -e syscalls:sys_enter_fsync -e syscalls:sys_exit_fsync \
    -e syscalls:sys_exit_recvfrom -e syscalls:sys_exit_read \
    -- "$bench" --bench 2>&1 | grep ' x  1:')

perf script -i "$data/perf.data" -F comm,pid,tid,time,event,trace 2>/dev/null | python3 -c '
import collections, statistics, sys

events = collections.defaultdict(list)
names = {}
for line in sys.stdin:
    f = line.split()
    if len(f) < 4 or f[0] == "perf":
        continue
    pid, tid = f[1].split("/")
    # The floor runs as the bench binary started again.
    names.setdefault(pid, "floor" if f[0].startswith("compare-") else f[0])
    ev = f[3].split(":")[1].replace("_fsync", "_fdatasync")  # Postfix fsyncs
    events[pid].append((float(f[2].rstrip(":")), tid, ev, f[4] if len(f) > 4 else ""))

def stat(v):
    return "median %5.0f  mean %5.0f" % (statistics.median(v) * 1e6, statistics.mean(v) * 1e6)

for pid, evs in events.items():
    fds = collections.Counter(e[3] for e in evs if e[2] == "sys_enter_fdatasync")
    if not fds or fds.most_common(1)[0][1] < 500:
        continue
    fd = fds.most_common(1)[0][0]  # the file flushed once per message
    starts, flushes, work = [], [], []
    last_read, open_flush = None, None
    for t, tid, ev, arg in evs:
        if ev in ("sys_exit_recvfrom", "sys_exit_read"):
            last_read = t
        elif ev == "sys_enter_fdatasync" and arg == fd and open_flush is None:
            open_flush = (t, tid, last_read)
        elif ev == "sys_exit_fdatasync" and open_flush and tid == open_flush[1]:
            t0, _, read = open_flush
            starts.append(t0)
            flushes.append(t - t0)
            if read is not None:
                work.append(t0 - read)
            open_flush = None
    cycles = [b - a for a, b in zip(starts, starts[1:])]
    print("%-16s %5d flushes  cycle %s  flush %s  work %s  (µs)" % (
        names[pid], len(starts), stat(cycles), stat(flushes), stat(work)))
'
