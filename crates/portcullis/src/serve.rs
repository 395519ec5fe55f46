//! `portcullis serve`: every enabled component in one process, on one store.
//!
//! Each component's `start` binds its listeners and returns its tasks; once all have
//! returned, "ready" is logged (tests and operators wait for that line). The event
//! log is followed and logged here too, so an operator sees CLI changes arrive.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use crate::commands::{CliError, Ctx};

pub async fn run(ctx: Ctx) -> Result<(), CliError> {
    init_logging();
    let config = Arc::new(ctx.config);
    std::fs::create_dir_all(&config.store.data_dir).map_err(|e| {
        CliError(format!(
            "store.data_dir: cannot create {}: {e}",
            config.store.data_dir.display()
        ))
    })?;
    let store = store::Store::open(&config.store.url).await?;
    info!(store = store.backend(), url = %config.store.url, "store open");

    let mut tasks = Vec::new();
    let fail = |component: &str, e: String| CliError(format!("{component}: {e}"));
    tasks.extend(
        enforce::nftables::start(config.clone(), store.clone())
            .await
            .map_err(|e| fail("enforce", e))?,
    );
    tasks.extend(
        enforce::radius_server::start(config.clone(), store.clone())
            .await
            .map_err(|e| fail("radius", e))?,
    );
    tasks.extend(
        enforce::coa::start(config.clone(), store.clone())
            .await
            .map_err(|e| fail("coa", e))?,
    );
    // Every accepted message feeds the sending-anomaly watch (stolen credentials),
    // and so does every recipient that bounces (harvested address lists). Counting is
    // in memory, on the caller's thread: only an anomaly (rare) gets a task, to record
    // its evidence and suspend the login, so no message pays for a task's wake-up.
    let watch = Arc::new(abuse::SubmissionWatch::new(&config, store.clone()));
    let act_on = |watch: &Arc<abuse::SubmissionWatch>, login: &str, anomaly: abuse::Anomaly| {
        let (watch, login) = (watch.clone(), login.to_string());
        tokio::spawn(async move {
            if let Err(e) = watch.act_on(&login, anomaly).await {
                error!(login = %login, "sending-anomaly watch: {e}");
            }
        });
    };
    let bounce_watch = watch.clone();
    let on_bounce = delivery::BounceHook(Arc::new(move |login: &str, _rcpt: &str| {
        if let Some(anomaly) = bounce_watch.observe_bounced(login) {
            act_on(&bounce_watch, login, anomaly);
        }
    }));
    let on_accept = submission::AcceptHook(Arc::new(move |login: &str, to: &[String]| {
        let refs: Vec<&str> = to.iter().map(String::as_str).collect();
        if let Some(anomaly) = watch.observe_accepted(login, &refs) {
            act_on(&watch, login, anomaly);
        }
    }));
    let delivery = delivery::start_with(
        config.clone(),
        store.clone(),
        delivery::DeliveryTunables {
            on_bounce: Some(on_bounce),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| fail("delivery", e.to_string()))?;
    let tunables = submission::Tunables {
        on_accept: Some(on_accept),
        handoff: Some(handoff(delivery.intake())),
        ..Default::default()
    };
    tasks.extend(delivery.into_handles());
    let server = submission::start_with(config.clone(), store.clone(), tunables)
        .await
        .map_err(|e| fail("submission", e.to_string()))?;
    tasks.extend(server.tasks);
    tasks.extend(
        abuse::start(config.clone(), store.clone())
            .await
            .map_err(|e| fail("abuse", e))?,
    );
    tasks.extend(
        portal::start(config.clone(), store.clone(), metrics_sources())
            .await
            .map_err(|e| fail("portal", e))?,
    );

    let cursor = store.last_event_id().await?;
    let mut follower = store.follow(cursor);
    tasks.push(tokio::spawn(async move {
        loop {
            match follower.next_batch().await {
                Ok(events) => {
                    for e in events {
                        info!(id = e.id, kind = %e.kind, login = %e.login.as_deref().unwrap_or("-"), payload = %e.payload, "event");
                    }
                }
                Err(e) => {
                    error!("event log: {e}");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }));

    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError(format!("cannot watch SIGTERM: {e}")))?;
    info!(
        pid = std::process::id(),
        event_cursor = cursor,
        "portcullis ready"
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
        _ = term.recv() => info!("SIGTERM: stopping"),
    }
    for t in &tasks {
        t.abort();
    }
    info!("stopped");
    Ok(())
}

/// The other components' counters, for the portal's `/metrics`.
fn metrics_sources() -> Vec<portal::MetricsSource> {
    let radius: portal::MetricsSource = Arc::new(|| {
        let mut out = String::from("# TYPE portcullis_radius_packets_total counter\n");
        for (name, value) in enforce::radius_server::COUNTERS.snapshot() {
            out.push_str(&format!(
                "portcullis_radius_packets_total{{kind=\"{name}\"}} {value}\n"
            ));
        }
        out
    });
    let submission: portal::MetricsSource = Arc::new(|| submission::metrics().render());
    vec![submission, radius]
}

fn init_logging() {
    let level = match std::env::var("PORTCULLIS_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Submission hands each message it commits to delivery on this node, which sends it
/// from memory; a message it could not take is queued for the dispatcher, woken at once.
fn handoff(intake: delivery::Intake) -> submission::Handoff {
    let reserve = intake.clone();
    submission::Handoff {
        reserve: Arc::new(move |recipients| {
            let r = reserve.reserve(recipients)?;
            Some(submission::Reservation {
                claim: r.claim().clone(),
                deliver: Box::new(move |message, body| r.deliver(message, body)),
            })
        }),
        queued: Arc::new(move || intake.wake()),
    }
}
