//! What every benchmark shares with `bench/run.sh`: its settings (`--quick` or
//! `PORTCULLIS_BENCH_QUICK=1`, `PORTCULLIS_BENCH_REPEATS`), medians, and where a
//! report section goes (`PORTCULLIS_BENCH_REPORT_DIR`, assembled into BENCHMARKS.md).
//! Each bench includes this file with `#[path = ".../bench/report.rs"] mod report;`.
#![allow(dead_code)] // each bench uses its own part of it

/// A short run: fewer repeats and smaller sizes.
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("PORTCULLIS_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// How many times each cell runs (its median is reported): 3, or 1 when quick.
pub fn repeats() -> usize {
    std::env::var("PORTCULLIS_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick() { 1 } else { 3 })
        .max(1)
}

/// The median (the upper one of an even count); NaN for no values.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The 1, 5 and 15 minute load averages, to print beside figures from a shared machine.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Writes a markdown section as `$PORTCULLIS_BENCH_REPORT_DIR/FILE`, or prints it
/// when the bench runs alone.
pub fn write_section(file: &str, markdown: &str) {
    match std::env::var_os("PORTCULLIS_BENCH_REPORT_DIR") {
        Some(dir) => {
            let path = std::path::Path::new(&dir).join(file);
            std::fs::create_dir_all(&dir).expect("report dir");
            std::fs::write(&path, markdown).expect("write report section");
            println!("wrote {}", path.display());
        }
        None => println!("\n{markdown}"),
    }
}

/// CPU seconds (user + system) used so far by process `pid` (`"self"` for this one),
/// its exited threads included.
pub fn process_cpu_seconds(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(f64::NAN, |s| stat_cpu_seconds(&s))
}

/// CPU seconds (user + system) used so far by the live threads of this process whose
/// name passes `keep`, from `/proc/self/task/*/stat`. Lets a bench that runs server
/// and load generator in one process charge each its own time.
pub fn thread_cpu_seconds(keep: impl Fn(&str) -> bool) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|s| stat_name(s).is_some_and(&keep))
        .map(|s| stat_cpu_seconds(&s))
        .sum()
}

/// The name in a `stat` line: "pid (name) state ...", where the name may hold spaces.
fn stat_name(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// utime + stime of a `stat` line, in seconds.
fn stat_cpu_seconds(stat: &str) -> f64 {
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    const TICKS_PER_SECOND: f64 = 100.0;
    let Some(close) = stat.rfind(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // stat(5) numbers fields from 1 with the pid; after the name, state is field 3,
    // utime 14 and stime 15.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}
