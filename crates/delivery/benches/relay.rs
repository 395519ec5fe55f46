//! Relay throughput: N messages enqueued directly into the queue, then the time
//! until the delivery workers have handed all of them to Postfix's `smtp-sink` on
//! loopback (MX lookup through a DNS server on loopback, one recipient each).
//!
//!     cargo bench -p delivery --bench relay -- [N] [postgres] [--quick]
//!
//! `postgres` uses postgres://postgres@127.0.0.1:5432/test (schema bench_relay)
//! instead of a fresh SQLite file. Without N, both backends run (5,000 messages on
//! SQLite, 3,000 on PostgreSQL; a tenth with `--quick`), `PORTCULLIS_BENCH_REPEATS`
//! times each (default 3); with `PORTCULLIS_BENCH_REPORT_DIR` set, the medians go to
//! `08-delivery.md` there.

#[path = "../../../bench/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../../portcullis/src/allocator.rs"]
mod allocator;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn main() {
    allocator::set_up();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (quick, repeats) = (report::quick(), report::repeats());
    let count: Option<usize> = args.first().and_then(|a| a.parse().ok());
    let backends: Vec<(bool, usize)> = match (count, args.iter().any(|a| a == "postgres")) {
        (Some(n), postgres) => vec![(postgres, n)],
        (None, true) => vec![(true, 3000)],
        (None, false) => vec![(false, 5000), (true, 3000)],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    for (postgres, n) in backends {
        let n = if quick && count.is_none() { n / 10 } else { n };
        let rates = (0..repeats)
            .map(|_| rt.block_on(run(n, postgres)))
            .collect();
        let backend = if postgres { "PostgreSQL" } else { "SQLite" };
        rows.push(format!(
            "| {backend} | {n} | {:.0} |",
            report::median(rates)
        ));
    }
    let section = format!(
        "## Delivery: queue to smtp-sink\n\n\
         `cargo bench -p delivery --bench relay`: messages of 1.9 KB put straight into the \
         queue, then the time until the delivery workers have handed all of them to \
         `smtp-sink` on loopback (MX lookup through a DNS server on loopback, one recipient \
         each, recipient states committed). Median of {repeats}. Submission to sink, \
         against Postfix, is in the relay section above.\n\n\
         | store | messages | messages/s |\n|---|---|---|\n{}\n",
        rows.join("\n")
    );
    report::write_section("08-delivery.md", &section);
}

/// One run; returns the relayed messages per second.
async fn run(n: usize, postgres: bool) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let sink_dir = dir.path().join("sink");
    std::fs::create_dir_all(&sink_dir).expect("sink dir");
    let path = smtp_sink_path().expect("smtp-sink (Debian package postfix) is installed");
    let _sink = tokio::process::Command::new(path)
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "1024"])
        .kill_on_drop(true)
        .spawn()
        .expect("smtp-sink starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dns = dns_server(vec![
        ("example.test", Rr::Mx(10, "mx.example.test")),
        ("mx.example.test", Rr::A(Ipv4Addr::LOCALHOST)),
    ])
    .await;
    let (store, backend) = if postgres {
        let base = "postgres://postgres@127.0.0.1:5432/test";
        let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL at 127.0.0.1:5432");
        tokio::spawn(conn);
        client
            .batch_execute("DROP SCHEMA IF EXISTS bench_relay CASCADE; CREATE SCHEMA bench_relay;")
            .await
            .expect("schema");
        (
            store::Store::open(&format!("{base}?options=-csearch_path%3Dbench_relay"))
                .await
                .expect("store"),
            "postgres",
        )
    } else {
        (sqlite_store(dir.path()).await, "sqlite")
    };
    let filler = "x".repeat(70);
    let mut body =
        String::from("From: ann@isp.test\r\nTo: bob@example.test\r\nSubject: bench\r\n\r\n");
    for _ in 0..25 {
        body.push_str(&filler);
        body.push_str("\r\n");
    }
    let t0 = Instant::now();
    for i in 0..n {
        store
            .enqueue(&message(
                "ann@isp.test",
                &[&format!("r{i}@example.test")],
                &body,
            ))
            .await
            .expect("enqueue");
    }
    let enqueue = t0.elapsed();
    let mut tunables = tunables(port);
    tunables.poll_interval = Duration::from_millis(20);
    let t1 = Instant::now();
    let node = delivery::start_with(Arc::new(config(dns)), store.clone(), tunables)
        .await
        .expect("delivery starts");
    loop {
        if store.pending_recipients().await.expect("count") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t1.elapsed();
    node.kill();
    println!(
        "relay ({backend}): {n} messages of {} bytes delivered to smtp-sink in {:.2} s = {:.0} messages/s (enqueue took {:.2} s)",
        body.len(),
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        enqueue.as_secs_f64()
    );
    n as f64 / took.as_secs_f64()
}
