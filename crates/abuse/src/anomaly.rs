//! Submission anomalies: the sign of a stolen password. Per login, a baseline of
//! messages per hour (an exponentially weighted average of past active hours); a
//! login sending far above its baseline, to very many distinct recipients in an
//! hour, or whose mail bounces a lot, is an [`Anomaly`], which the engine turns into evidence and a suspension.
//!
//! [`SendingMonitor`] is pure (time is passed in); [`SubmissionWatch`] is the API the
//! submission server calls once per accepted message. Baselines live in memory: a
//! restart relearns them (and never suspends on an empty baseline below the floor).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use policy::Timestamp;
use serde::Serialize;
use store::NewEvidence;

use crate::engine::{ActionTaken, Engine};
use crate::AbuseError;

/// When a login's sending is anomalous.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnomalyLimits {
    /// Never an anomaly at or below this many messages in an hour.
    pub hourly_floor: u32,
    /// An anomaly above this multiple of the baseline (and above the floor).
    pub factor: f64,
    /// An anomaly above this many distinct recipients in an hour.
    pub distinct_recipients_per_hour: u32,
    /// An anomaly above this many bounced recipients in an hour (lists of
    /// harvested addresses bounce a lot).
    pub bounces_per_hour: u32,
}

impl Default for AnomalyLimits {
    fn default() -> Self {
        AnomalyLimits {
            hourly_floor: 50,
            factor: 10.0,
            distinct_recipients_per_hour: 300,
            bounces_per_hour: 50,
        }
    }
}

/// One login's sending out of the ordinary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub login: String,
    pub hour_start: Timestamp,
    pub messages_this_hour: u32,
    pub distinct_recipients: u32,
    pub bounces_this_hour: u32,
    /// Messages per active hour, when learned.
    pub baseline: Option<f64>,
    pub reason: String,
}

#[derive(Debug, Default)]
struct LoginState {
    hour: i64,
    messages: u32,
    bounces: u32,
    recipients: HashSet<u64>,
    baseline: Option<f64>,
    flagged: bool,
}

/// Per-login baselines and the current hour's counts.
#[derive(Debug, Default)]
pub struct SendingMonitor {
    pub limits: AnomalyLimits,
    logins: HashMap<String, LoginState>,
}

impl SendingMonitor {
    pub fn new(limits: AnomalyLimits) -> SendingMonitor {
        SendingMonitor {
            limits,
            logins: HashMap::new(),
        }
    }

    /// The baseline (messages per active hour) of `login`, once learned (after its
    /// first active hour).
    pub fn baseline(&self, login: &str) -> Option<f64> {
        self.logins.get(login).and_then(|s| s.baseline)
    }

    /// The state of `login`, rolled over to the hour of `at`.
    fn state(&mut self, login: &str, at: Timestamp) -> &mut LoginState {
        let hour = at.0 - at.0.rem_euclid(3600);
        let s = self.logins.entry(login.to_string()).or_default();
        if s.hour != hour {
            if s.messages > 0 {
                let m = f64::from(s.messages);
                s.baseline = Some(s.baseline.map_or(m, |b| 0.8 * b + 0.2 * m));
            }
            s.hour = hour;
            s.messages = 0;
            s.bounces = 0;
            s.recipients.clear();
            s.flagged = false;
        }
        s
    }

    /// Counts one bounced recipient of a message `login` sent (delivery calls this
    /// when it generates a DSN); an [`Anomaly`] at most once per login and hour.
    pub fn observe_bounce(&mut self, login: &str, at: Timestamp) -> Option<Anomaly> {
        let limit = self.limits.bounces_per_hour;
        let s = self.state(login, at);
        s.bounces += 1;
        if s.flagged || s.bounces <= limit {
            return None;
        }
        s.flagged = true;
        Some(Anomaly {
            login: login.to_string(),
            hour_start: Timestamp(s.hour),
            messages_this_hour: s.messages,
            distinct_recipients: s.recipients.len() as u32,
            bounces_this_hour: s.bounces,
            baseline: s.baseline,
            reason: format!("{} bounced recipients this hour", s.bounces),
        })
    }

    /// Counts one accepted message; an [`Anomaly`] at most once per login and hour.
    pub fn observe(&mut self, login: &str, recipients: &[&str], at: Timestamp) -> Option<Anomaly> {
        let l = self.limits;
        let s = self.state(login, at);
        let hour = s.hour;
        s.messages += 1;
        for r in recipients {
            let mut h = DefaultHasher::new();
            r.to_ascii_lowercase().hash(&mut h);
            s.recipients.insert(h.finish());
        }
        if s.flagged {
            return None;
        }
        // Without a baseline yet (a new login, or after a restart) only the
        // distinct-recipients rule applies.
        let baseline = s.baseline.unwrap_or(f64::INFINITY);
        let volume = s.messages > l.hourly_floor && f64::from(s.messages) > l.factor * baseline;
        let fan = s.recipients.len() as u32 > l.distinct_recipients_per_hour;
        if !(volume || fan) {
            return None;
        }
        s.flagged = true;
        let reason = if volume {
            format!(
                "{} messages this hour against a usual {:.0} per hour",
                s.messages, baseline
            )
        } else {
            format!("{} distinct recipients this hour", s.recipients.len())
        };
        Some(Anomaly {
            login: login.to_string(),
            hour_start: Timestamp(hour),
            messages_this_hour: s.messages,
            distinct_recipients: s.recipients.len() as u32,
            bounces_this_hour: s.bounces,
            baseline: s.baseline,
            reason,
        })
    }
}

/// What the submission server calls per accepted message.
pub struct SubmissionWatch {
    engine: Engine,
    monitor: Mutex<SendingMonitor>,
}

impl SubmissionWatch {
    pub fn new(config: &config::Config, store: store::Store) -> SubmissionWatch {
        SubmissionWatch::with_engine(Engine::new(config, store), AnomalyLimits::default())
    }

    pub fn with_engine(engine: Engine, limits: AnomalyLimits) -> SubmissionWatch {
        SubmissionWatch {
            engine,
            monitor: Mutex::new(SendingMonitor::new(limits)),
        }
    }

    /// Counts one accepted message of `login`; on an anomaly, records the evidence
    /// and suspends the login (until an operator lifts it).
    pub async fn accepted(
        &self,
        login: &str,
        recipients: &[&str],
    ) -> Result<Option<(Anomaly, Vec<ActionTaken>)>, AbuseError> {
        match self.observe_accepted(login, recipients) {
            Some(a) => self.act_on(login, a).await.map(Some),
            None => Ok(None),
        }
    }

    /// [`Self::accepted`]'s counting alone, in memory and without waiting: the
    /// submission server calls it per message, before the `250`, and hands only an
    /// anomaly (rare) to [`Self::act_on`] on a task of its own.
    pub fn observe_accepted(&self, login: &str, recipients: &[&str]) -> Option<Anomaly> {
        let now = self.engine.now();
        self.monitor.lock().ok()?.observe(login, recipients, now)
    }

    /// Counts one bounced recipient of `login`'s mail (delivery calls this per DSN
    /// recipient), as [`Self::observe_accepted`]: many in an hour is an anomaly.
    pub fn observe_bounced(&self, login: &str) -> Option<Anomaly> {
        let now = self.engine.now();
        self.monitor.lock().ok()?.observe_bounce(login, now)
    }

    /// Records an anomaly's evidence and suspends the login.
    pub async fn act_on(
        &self,
        login: &str,
        a: Anomaly,
    ) -> Result<(Anomaly, Vec<ActionTaken>), AbuseError> {
        let now = self.engine.now();
        tracing::warn!(login, reason = %a.reason, "submission anomaly");
        let evidence = NewEvidence {
            kind: "anomaly".into(),
            fingerprint: Some(format!("anomaly:{login}:{}", a.hour_start.0)),
            ip: None,
            at: now,
            login: Some(login.to_string()),
            unattributed: None,
            summary: format!("unusual sending through your account: {}", a.reason),
            detail: serde_json::to_value(&a).unwrap_or(serde_json::Value::Null),
        };
        let actions = self
            .engine
            .record(evidence, 0, true)
            .await?
            .map(|(_, acts)| acts)
            .unwrap_or_default();
        Ok((a, actions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_then_burst_is_an_anomaly_once_per_hour() {
        let mut m = SendingMonitor::default();
        let t0: i64 = 1_800_000_000; // an hour boundary
                                     // Ten quiet hours of 5 messages.
        for h in 0..10 {
            for i in 0..5 {
                assert!(m
                    .observe("alice", &["a@x"], Timestamp(t0 + h * 3600 + i))
                    .is_none());
            }
        }
        let hour = t0 + 10 * 3600;
        let mut found = None;
        for i in 0..60 {
            if let Some(a) = m.observe("alice", &["a@x"], Timestamp(hour + i)) {
                found = Some((i, a));
                break;
            }
        }
        let (i, a) = found.expect("anomaly");
        assert_eq!(i, 50, "the 51st message is above the floor");
        assert!((a.baseline.unwrap() - 5.0).abs() < 0.01);
        assert!(m
            .observe("alice", &["a@x"], Timestamp(hour + 100))
            .is_none());
        assert!(m
            .observe("alice", &["a@x"], Timestamp(hour + 3600))
            .is_none());
        assert!(m.baseline("alice").unwrap() > 5.0);
    }

    #[test]
    fn many_distinct_recipients_is_an_anomaly() {
        let mut m = SendingMonitor::default();
        let rcpts: Vec<String> = (0..301).map(|i| format!("r{i}@x")).collect();
        let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let a = m.observe("bob", &refs, Timestamp(0)).unwrap();
        assert_eq!(a.distinct_recipients, 301);
        assert!(a.reason.contains("distinct recipients"));
    }

    #[test]
    fn many_bounces_is_an_anomaly() {
        let mut m = SendingMonitor::default();
        for i in 0..50 {
            assert!(m.observe_bounce("carl", Timestamp(i)).is_none());
        }
        let a = m.observe_bounce("carl", Timestamp(51)).unwrap();
        assert_eq!(a.bounces_this_hour, 51);
        assert!(m.observe_bounce("carl", Timestamp(52)).is_none());
        // A new hour starts from zero.
        assert!(m.observe_bounce("carl", Timestamp(3600)).is_none());
    }

    #[test]
    fn a_steady_heavy_sender_is_not_flagged() {
        let mut m = SendingMonitor::default();
        for h in 0..48 {
            for i in 0..200 {
                let a = m.observe("shop", &["c@x"], Timestamp(h * 3600 + i));
                assert!(a.is_none(), "hour {h}");
            }
        }
    }
}
