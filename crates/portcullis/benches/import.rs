//! `cargo bench -p portcullis --bench import [-- ROWS] [--quick]`: imports ROWS
//! (default 1,000,000; `--quick` 100,000) subscribers without passwords through the
//! real CLI, into SQLite and into PostgreSQL (127.0.0.1:5432, a throw-away schema),
//! and prints the times; then times a `whois` and a `subscriber show` against the full
//! store. Each backend runs `PORTCULLIS_BENCH_REPEATS` times (default 3) into a fresh
//! store; medians go to `$PORTCULLIS_BENCH_REPORT_DIR/07-import.md` when that is set.

#[path = "../../../bench/report.rs"]
mod report;

use std::io::Write;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn main() {
    let quick = report::quick();
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let repeats = report::repeats();
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("subscribers.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).expect("create csv"));
    writeln!(f, "login,plan,static_ip,email,password_hash").expect("write");
    for i in 0..rows {
        writeln!(f, "sub{i:07},dynamic,,sub{i:07}@example.net,").expect("write");
    }
    drop(f);
    let leases = dir.path().join("leases.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&leases).expect("create csv"));
    writeln!(f, "login,ip,start,end").expect("write");
    for i in 0..rows.min(100_000) {
        let ip = 0x6440_0000u32 + i as u32; // 100.64.0.0 onwards
        let ip = std::net::Ipv4Addr::from(ip);
        writeln!(f, "sub{i:07},{ip},2026-11-01T00:00:00Z,").expect("write");
    }
    drop(f);

    println!("subscriber import of {rows} rows without passwords (real CLI, one transaction)");
    let mut table = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let mut runs = Vec::new();
        for repeat in 0..repeats {
            let times = import_once(dir.path(), backend, repeat, &csv, &leases);
            println!(
                "{backend:>8}: import {:>7.2} s ({:>8.0} rows/s); lease import {} rows {:>6.2} s; whois {:>5} ms; show {:>5} ms",
                times[0],
                rows as f64 / times[0],
                rows.min(100_000),
                times[1],
                (times[2] * 1000.0).round(),
                (times[3] * 1000.0).round()
            );
            runs.push(times);
        }
        let median = |i: usize| report::median(runs.iter().map(|t| t[i]).collect());
        table.push(format!(
            "| {backend} | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} |",
            median(0),
            rows as f64 / median(0),
            median(1),
            median(2) * 1000.0,
            median(3) * 1000.0
        ));
    }
    let section = format!(
        "## Store: bulk import and lookups\n\n\
         `cargo bench -p portcullis --bench import -- {rows}`: {rows} subscribers without passwords \
         through the real CLI (one transaction, an audit row each), then {} leases; `whois` and \
         `subscriber show` against the full store, process start included. Median of {repeats}.\n\n\
         | backend | import s | rows/s | lease import s | whois ms | show ms |\n\
         |---|---|---|---|---|---|\n{}\n",
        rows.min(100_000),
        table.join("\n")
    );
    report::write_section("07-import.md", &section);
}

/// One import into a fresh store: seconds for [subscriber import, lease import, whois, show].
fn import_once(
    dir: &std::path::Path,
    backend: &str,
    repeat: usize,
    csv: &std::path::Path,
    leases: &std::path::Path,
) -> [f64; 4] {
    let schema = format!("bench_import_{}_{repeat}", std::process::id());
    let url = if backend == "sqlite" {
        format!(
            "sqlite://{}",
            dir.join(format!("bench{repeat}.db")).display()
        )
    } else {
        psql(&format!("CREATE SCHEMA {schema}"));
        format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}")
    };
    let config = dir.join(format!("{backend}{repeat}.toml"));
    std::fs::write(&config, format!("[store]\nurl = \"{url}\"\n")).expect("write config");
    let run = |args: &[&str]| {
        let t = Instant::now();
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("run portcullis");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed().as_secs_f64()
    };
    let times = [
        run(&["subscriber", "import", csv.to_str().unwrap_or_default()]),
        run(&["lease", "import", leases.to_str().unwrap_or_default()]),
        run(&["whois", "100.64.0.77"]),
        run(&["subscriber", "show", "sub0000077"]),
    ];
    if backend == "postgres" {
        psql(&format!("DROP SCHEMA {schema} CASCADE"));
    } else {
        let _ = std::fs::remove_file(dir.join(format!("bench{repeat}.db")));
    }
    times
}

fn psql(sql: &str) {
    let ok = Command::new("psql")
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-c",
            &format!("SET client_min_messages = warning; {sql}"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "psql {sql} failed (is PostgreSQL up on 127.0.0.1:5432?)"
    );
}
