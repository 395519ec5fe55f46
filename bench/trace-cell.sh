# Sourced by bench/phases.sh and bench/replies.sh: runs the compare bench's
# one-session submission cell for one size under `perf record -a` of the given
# tracepoints. After `trace_cell SIZE EVENT...`, "$data/perf.data" holds the trace
# (removed on exit) and $messages the cell's message count: the bench also sends a
# few hundred more under strace, which the callers leave out by keeping the densest
# run of this many flushes. Needs root, perf and a release build (bench/run.sh, or
# `cargo bench -p portcullis --bench compare --no-run`).

trace_cell() {
    local size=$1 target=${CARGO_TARGET_DIR:-/var/tmp/portcullis-release} bench
    shift
    local events=()
    for event in "$@"; do
        events+=(-e "$event")
    done
    command -v perf >/dev/null || { echo "$(basename "$0") needs perf (apt-get install linux-perf)" >&2; exit 1; }
    bench=$(ls -t "$target"/release/deps/compare-* | grep -v '\.d$' | head -1)
    data=$(mktemp -d /var/tmp/portcullis-trace.XXXXXX)
    trap 'rm -rf "$data"' EXIT
    (cd crates/portcullis && COMPARE_BENCH_ONLY_SUBMISSION=1 COMPARE_BENCH_SIZES=$size COMPARE_BENCH_SESSIONS=1 \
        PORTCULLIS_BENCH_REPEATS=1 perf record -q -a -o "$data/perf.data" "${events[@]}" \
        -- "$bench" --bench 2>&1 | grep ' x  1:' | tee "$data/cells")
    messages=$(grep -m1 portcullis "$data/cells" | sed -E 's/.*\(([0-9]+) sent.*/\1/')
}
