#!/usr/bin/env bash
# Who waits for whom in one session, reply by reply: runs the compare bench's
# one-session submission cell for one size (default 100 KB) under `perf record` of
# the socket and flush syscalls, and prints for portcullis and the floors, for each
# reply of a message's cycle (0 is the `250` after the flush, then MAIL's, RCPT's
# and DATA's), the medians of
#   server  from the read that completed the command to the reply's write,
#   client  from the reply written to the next bytes read from the client
#           (the client's turn, its wake-up and ours, and whatever else runs on the
#           two cores meanwhile: relaying the message before, for one).
# A gap after a reply that the floor does not have is work competing with the
# client. The trace slows every server down: compare the two, not the rates. Needs
# root, perf and a release build (see bench/trace-cell.sh).
#
#   bench/replies.sh [SIZE_BYTES]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/trace-cell.sh
events=()
for call in recvfrom read sendto write writev fdatasync; do
    events+=("syscalls:sys_enter_$call" "syscalls:sys_exit_$call")
done
trace_cell "${1:-102400}" "${events[@]}"

perf script -i "$data/perf.data" -F comm,pid,tid,time,event,trace 2>/dev/null | python3 -c '
import collections, re, statistics, sys

line_re = re.compile(r"\s*(\S+)\s+(\d+)/(\d+)\s+([\d.]+):\s+syscalls:sys_(enter|exit)_(\w+):\s*(.*)")
calls = collections.defaultdict(list)  # pid -> (start, end, call, fd, result)
names, entered = {}, {}
for line in sys.stdin:
    m = line_re.match(line)
    if not m:
        continue
    comm, pid, tid, t, edge, call, rest = m.groups()
    # The floors run as the bench binary started again, the threads of their runtimes
    # named after them (floor, floor+queue).
    if comm.startswith("floor"):
        names[pid] = comm
    else:
        names.setdefault(pid, comm)
    if edge == "enter":
        entered[tid] = (float(t), call, int(rest.split(",")[0].split(":")[1], 16))
    elif tid in entered and entered[tid][1] == call:
        start, _, fd = entered.pop(tid)
        result = int(rest, 16)
        calls[pid].append((start, float(t), call, fd, result - (1 << 64) if result >> 63 else result))

messages = int(sys.argv[1])
for pid, cs in calls.items():
    if names[pid] != "portcullis" and not names[pid].startswith("floor"):
        continue
    cs.sort()
    # The file flushed once per message (a checkpoint flushes the database file too).
    wal = collections.Counter(c[3] for c in cs if c[2] == "fdatasync").most_common(1)[0][0]
    flushes = [c for c in cs if c[2] == "fdatasync" and c[3] == wal]
    if len(flushes) < messages:
        continue
    # The cell: the densest run of this many flushes (the bench sends more under strace).
    first = min(range(len(flushes) - messages + 1),
                key=lambda i: flushes[i + messages - 1][0] - flushes[i][0])
    since, until = flushes[first][0], flushes[first + messages - 1][1]
    received = collections.Counter()
    for c in cs:
        if c[2] in ("recvfrom", "read") and c[4] > 0:
            received[c[3]] += c[4]
    client = received.most_common(1)[0][0]  # the socket the bodies come in on
    server, waited = collections.defaultdict(list), collections.defaultdict(list)
    reply, last_read, written = None, None, None
    for start, end, call, fd, result in cs:
        if not since <= start <= until:
            continue
        if call == "fdatasync":
            if fd == wal:
                reply, last_read, written = 0, end, None
        elif reply is None or fd != client or result <= 0:
            continue
        elif call in ("recvfrom", "read"):
            if written is not None:
                waited[reply - 1].append(end - written)
                written = None
            last_read = end
        else:
            server[reply].append(start - last_read)
            written, reply = end, reply + 1
    med = lambda v: "%5.0f" % (statistics.median(v) * 1e6) if v else "    -"
    print("%-10s %d messages, µs per reply (medians):" % (names[pid], messages))
    for r in sorted(server):
        if len(server[r]) >= messages // 2:
            print("  reply %d  server %s  client %s" % (r, med(server[r]), med(waited[r])))
' "$messages"
