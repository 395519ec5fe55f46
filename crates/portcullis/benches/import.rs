//! `cargo bench -p portcullis --bench import [-- ROWS]`: imports ROWS (default
//! 1,000,000) subscribers without passwords through the real CLI, into SQLite and into
//! PostgreSQL (127.0.0.1:5432, a throw-away schema), and prints the times; then times a
//! `whois` and a `subscriber show` against the full store.

use std::io::Write;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn main() {
    let rows: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
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
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let schema = format!("bench_import_{}", std::process::id());
    let pg = format!("postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}");
    psql(&format!("CREATE SCHEMA {schema}"));
    for (name, url) in [("sqlite", sqlite.as_str()), ("postgres", pg.as_str())] {
        let config = dir.path().join(format!("{name}.toml"));
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
            t.elapsed()
        };
        let import = run(&["subscriber", "import", csv.to_str().unwrap_or_default()]);
        let lease = run(&["lease", "import", leases.to_str().unwrap_or_default()]);
        let whois = run(&["whois", "100.64.0.77"]);
        let show = run(&["subscriber", "show", "sub0000077"]);
        println!(
            "{name:>8}: import {:>7.2} s ({:>8.0} rows/s); lease import {} rows {:>6.2} s; whois {:>5} ms; show {:>5} ms",
            import.as_secs_f64(),
            rows as f64 / import.as_secs_f64(),
            rows.min(100_000),
            lease.as_secs_f64(),
            whois.as_millis(),
            show.as_millis()
        );
    }
    psql(&format!("DROP SCHEMA {schema} CASCADE"));
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
