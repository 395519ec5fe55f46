//! The flow collector: UDP listeners on `abuse.flow_listen` that feed datagrams to
//! the `flow` decoder, count port-25 fan-out of sources in our pools, and hand each
//! [`FanOut`] to the engine as `flow` evidence (an opted-out subscriber is
//! re-instated, a blocked one gets an infection notice).
//!
//! Only the I/O and the hand-off live here; decoding and counting are in `flow`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use store::NewEvidence;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::decide::human;
use crate::engine::{ActionTaken, Engine};
use crate::flow::{Decoder, FanOut, FanOutCounter};
use crate::AbuseError;

/// Counters of one listener, readable while it runs.
#[derive(Debug, Default)]
pub struct CollectorStats {
    pub datagrams: AtomicU64,
    pub records: AtomicU64,
    /// Garbage, truncated or unknown-version datagrams, skipped.
    pub refused: AtomicU64,
    pub smtp_records: AtomicU64,
    pub fan_outs: AtomicU64,
}

/// A snapshot of [`CollectorStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    pub datagrams: u64,
    pub records: u64,
    pub refused: u64,
    pub smtp_records: u64,
    pub fan_outs: u64,
}

impl CollectorStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            smtp_records: self.smtp_records.load(Ordering::Relaxed),
            fan_outs: self.fan_outs.load(Ordering::Relaxed),
        }
    }
}

/// One bound listener.
pub struct Collector {
    socket: UdpSocket,
    engine: Engine,
    pub stats: Arc<CollectorStats>,
}

impl Collector {
    pub async fn bind(addr: SocketAddr, engine: Engine) -> Result<Collector, AbuseError> {
        let socket = UdpSocket::bind(addr).await.map_err(|e| AbuseError::Bind {
            addr: addr.to_string(),
            what: "flow collector (abuse.flow_listen)",
            reason: e.to_string(),
        })?;
        Ok(Collector {
            socket,
            engine,
            stats: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Receives until the task is dropped.
    pub async fn run(self) {
        let (tx, mut rx) = mpsc::channel::<FanOut>(1024);
        let engine = self.engine.clone();
        let recorder = tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if let Err(e) = record_fan_out(&engine, &f).await {
                    tracing::error!(src = %f.src, "cannot record port-25 fan-out: {e}");
                }
            }
        });
        let t = self.engine.thresholds();
        let mut counter = FanOutCounter::new(t.flow_window, t.flow_destinations);
        let mut decoder = Decoder::new();
        let pools = self.engine.pools().clone();
        let mut buf = vec![0u8; 65_536];
        let addr = self.local_addr();
        tracing::info!(listen = ?addr, "flow collector listening (NetFlow v5/v9, IPFIX)");
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("flow collector receive error: {e}");
                    continue;
                }
            };
            let now = self.engine.now();
            let mut alerts = Vec::new();
            let mut smtp = 0u64;
            let result = decoder.decode(from, &buf[..n], |r| {
                if r.is_smtp() && pools.classify(r.src).is_some() {
                    smtp += 1;
                    if let Some(a) = counter.observe(r, now) {
                        alerts.push(a);
                    }
                }
            });
            self.stats.datagrams.fetch_add(1, Ordering::Relaxed);
            self.stats.smtp_records.fetch_add(smtp, Ordering::Relaxed);
            match result {
                Ok(records) => {
                    self.stats
                        .records
                        .fetch_add(records as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    let refused = self.stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
                    if refused.is_power_of_two() {
                        tracing::warn!(exporter = %from, refused, "flow datagram skipped: {e}");
                    }
                }
            }
            for a in alerts {
                self.stats.fan_outs.fetch_add(1, Ordering::Relaxed);
                if tx.try_send(a).is_err() {
                    tracing::error!("fan-out queue full: alert dropped");
                }
            }
            if recorder.is_finished() {
                tracing::error!("fan-out recorder stopped");
                return;
            }
        }
    }
}

/// Binds every `flow_listen` address and starts a task per listener.
pub async fn start(
    listen: &[SocketAddr],
    engine: Engine,
) -> Result<Vec<tokio::task::JoinHandle<()>>, AbuseError> {
    let mut collectors = Vec::new();
    for addr in listen {
        collectors.push(Collector::bind(*addr, engine.clone()).await?);
    }
    Ok(collectors
        .into_iter()
        .map(|c| tokio::spawn(c.run()))
        .collect())
}

/// Records a fan-out as `flow` evidence and applies the rules.
pub async fn record_fan_out(
    engine: &Engine,
    f: &FanOut,
) -> Result<Vec<ActionTaken>, store::StoreError> {
    let now = engine.now();
    let who = engine.attribute(Some(f.src), now).await?;
    let window = human(engine.thresholds().flow_window);
    let evidence = NewEvidence {
        kind: "flow".into(),
        fingerprint: Some(format!("flow:{}:{}", f.src, f.window_start.0)),
        ip: Some(f.src),
        at: now,
        login: who.login,
        unattributed: who.unattributed,
        summary: format!(
            "port-25 connections to {} distinct mail servers within {window}",
            f.destinations
        ),
        detail: serde_json::json!({
            "destinations": f.destinations,
            "flows": f.flows,
            "window_start": f.window_start,
            "window": window,
        }),
    };
    Ok(engine
        .record(evidence, f.destinations, false)
        .await?
        .map(|(_, a)| a)
        .unwrap_or_default())
}

/// Whether `ip` is worth counting (in our pools).
pub fn in_pools(engine: &Engine, ip: IpAddr) -> bool {
    engine.pools().classify(ip).is_some()
}
