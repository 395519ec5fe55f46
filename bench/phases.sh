#!/usr/bin/env bash
# Where one session's time goes, message by message: runs the compare bench's
# one-session submission cell for one size (default 100 KB) under `perf record` of
# syscall tracepoints, and prints for portcullis and the floors (Postfix spreads its
# work and flushes over processes) the median and 90th percentile over the cell's
# messages of
#   cycle  from one message's flush to the next one's (the rate's inverse),
#   flush  the fdatasync itself,
#   work   from the last bytes read before the flush to the flush (what the server
#          does between the end of the body and making it durable).
# The rest of a cycle is the client's round trips, the body on the wire and
# whatever else shares the two cores. Needs root, perf and a release build
# (see bench/trace-cell.sh).
#
#   bench/phases.sh [SIZE_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/trace-cell.sh
trace_cell "${1:-102400}" syscalls:sys_enter_fdatasync syscalls:sys_exit_fdatasync \
    syscalls:sys_exit_recvfrom syscalls:sys_exit_read

perf script -i "$data/perf.data" -F comm,pid,tid,time,event,trace 2>/dev/null | python3 -c '
import collections, sys

events = collections.defaultdict(list)
names = {}
for line in sys.stdin:
    f = line.split()
    if len(f) < 4 or f[0] == "perf":
        continue
    pid, tid = f[1].split("/")
    # The floors run as the bench binary started again, the threads of their runtimes
    # named after them (floor, floor+queue).
    if f[0].startswith("floor"):
        names[pid] = f[0]
    else:
        names.setdefault(pid, f[0])
    events[pid].append((float(f[2].rstrip(":")), tid, f[3].split(":")[1], f[4] if len(f) > 4 else ""))

messages = int(sys.argv[1])

def stat(v):
    v = sorted(v)
    return "median %5.0f  p90 %5.0f" % (v[len(v) // 2] * 1e6, v[len(v) * 9 // 10] * 1e6)

for pid, evs in events.items():
    if names[pid] != "portcullis" and not names[pid].startswith("floor"):
        continue
    fds = collections.Counter(e[3] for e in evs if e[2] == "sys_enter_fdatasync")
    if not fds:
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
            work.append(t0 - read if read is not None else 0.0)
            open_flush = None
    if len(starts) < messages:
        continue
    first = min(range(len(starts) - messages + 1), key=lambda i: starts[i + messages - 1] - starts[i])
    cell = range(first, first + messages)
    cycles = [starts[i + 1] - starts[i] for i in cell if i + 1 < first + messages]
    print("%-10s %5d messages  cycle %s  flush %s  work %s  (µs)" % (
        names[pid], messages, stat(cycles), stat([flushes[i] for i in cell]), stat([work[i] for i in cell])))
' "$messages"
