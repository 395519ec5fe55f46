//! The decisions: given a subscriber's port-25 state and the evidence against them
//! within the configured windows, what the abuse loop does.
//!
//! Pure: the clock is injected ([`policy::Clock`]) and the evidence arrives already
//! counted, so the rules are tested without a store or sleeping. This module does not
//! act: `engine` applies a [`Decision`] (transition, suspension, notice).

use std::sync::Arc;
use std::time::Duration;

use policy::{Clock, Port25State, Timestamp};
use serde::Serialize;

/// The thresholds of `[abuse.thresholds]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub complaints: u32,
    pub complaint_window: Duration,
    pub listings: u32,
    pub flow_destinations: u32,
    pub flow_window: Duration,
    /// How long after an infection notice another one is not sent.
    pub notice_quiet: Duration,
}

impl Thresholds {
    pub fn from_config(t: &config::AbuseThresholds) -> Thresholds {
        Thresholds {
            complaints: t.complaints.max(1),
            complaint_window: t.complaint_window.get(),
            listings: t.listings.max(1),
            flow_destinations: t.flow_destinations.max(1),
            flow_window: t.flow_window.get(),
            notice_quiet: Duration::from_secs(86_400),
        }
    }
}

/// What a subscriber looks like to the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub login: String,
    pub port25: Port25State,
    pub suspended: bool,
    /// Complaints against them since [`Decider::complaint_since`].
    pub complaints: u32,
    /// DNSBL zones listing one of their addresses now.
    pub listings: u32,
    /// Most distinct port-25 destinations seen in one flow window (this alert).
    pub flow_destinations: u32,
    /// A submission anomaly was just seen.
    pub anomaly: bool,
    /// When they were last sent an infection notice.
    pub last_infection_notice: Option<Timestamp>,
}

/// One action of the abuse loop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Decision {
    /// Close port 25 again (`Port25Action::Reinstate`) and tell the customer.
    Reinstate { reason: String },
    /// Tell a blocked customer their PC keeps trying port 25.
    InfectionNotice { reason: String },
    /// Suspend sending through submission until an operator lifts it.
    Suspend { reason: String },
}

impl Decision {
    pub fn reason(&self) -> &str {
        match self {
            Decision::Reinstate { reason }
            | Decision::InfectionNotice { reason }
            | Decision::Suspend { reason } => reason,
        }
    }
}

/// The rules, with their thresholds and clock.
#[derive(Clone)]
pub struct Decider {
    pub thresholds: Thresholds,
    clock: Arc<dyn Clock>,
}

impl Decider {
    pub fn new(thresholds: Thresholds, clock: Arc<dyn Clock>) -> Decider {
        Decider { thresholds, clock }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The start of the complaint window.
    pub fn complaint_since(&self) -> Timestamp {
        self.clock.now().minus(self.thresholds.complaint_window)
    }

    /// What to do about `s`.
    pub fn decide(&self, s: &Standing) -> Vec<Decision> {
        let t = &self.thresholds;
        let mut out = Vec::new();
        let mut why = Vec::new();
        if s.complaints >= t.complaints {
            why.push(format!(
                "{} complaint(s) within {}",
                s.complaints,
                human(t.complaint_window)
            ));
        }
        if s.listings >= t.listings {
            why.push(format!("listed on {} DNS blocklist(s)", s.listings));
        }
        let fan_out = s.flow_destinations >= t.flow_destinations;
        if fan_out {
            why.push(format!(
                "port-25 connections to {} distinct destinations within {}",
                s.flow_destinations,
                human(t.flow_window)
            ));
        }
        match s.port25 {
            Port25State::OptedOut | Port25State::OptoutPending if !why.is_empty() => {
                out.push(Decision::Reinstate {
                    reason: why.join("; "),
                });
            }
            Port25State::Blocked | Port25State::Reinstated if fan_out => {
                let quiet = s
                    .last_infection_notice
                    .is_some_and(|at| at.plus(t.notice_quiet) > self.clock.now());
                if !quiet {
                    out.push(Decision::InfectionNotice {
                        reason: format!(
                            "port 25 is blocked, yet a device tried to reach {} mail servers within {}",
                            s.flow_destinations,
                            human(t.flow_window)
                        ),
                    });
                }
            }
            _ => {}
        }
        if s.anomaly && !s.suspended {
            out.push(Decision::Suspend {
                reason: "sending far above this account's usual volume (stolen password?)"
                    .to_string(),
            });
        }
        out
    }
}

/// "7d", "10m": how the windows are written in config.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::FixedClock;

    fn decider(clock: &FixedClock) -> Decider {
        Decider::new(
            Thresholds::from_config(&config::AbuseThresholds::default()),
            Arc::new(clock.clone()),
        )
    }

    fn standing(port25: Port25State) -> Standing {
        Standing {
            login: "alice".into(),
            port25,
            suspended: false,
            complaints: 0,
            listings: 0,
            flow_destinations: 0,
            anomaly: false,
            last_infection_notice: None,
        }
    }

    #[test]
    fn one_complaint_reinstates_an_opted_out_subscriber() {
        let clock = FixedClock::at(Timestamp(1_000_000));
        let d = decider(&clock);
        let s = Standing {
            complaints: 1,
            ..standing(Port25State::OptedOut)
        };
        let out = d.decide(&s);
        assert_eq!(out.len(), 1);
        assert!(
            matches!(&out[0], Decision::Reinstate { reason } if reason.contains("1 complaint(s) within 7d"))
        );
        assert_eq!(d.complaint_since(), Timestamp(1_000_000 - 7 * 86_400));
    }

    #[test]
    fn below_thresholds_nothing_happens() {
        let clock = FixedClock::at(Timestamp(0));
        let d = decider(&clock);
        let s = Standing {
            flow_destinations: 99,
            ..standing(Port25State::OptedOut)
        };
        assert!(d.decide(&s).is_empty());
        assert!(d.decide(&standing(Port25State::Blocked)).is_empty());
    }

    #[test]
    fn listing_or_fan_out_reinstates_but_not_exempt_or_blocked() {
        let clock = FixedClock::at(Timestamp(0));
        let d = decider(&clock);
        let listed = Standing {
            listings: 1,
            ..standing(Port25State::OptoutPending)
        };
        assert!(matches!(d.decide(&listed)[0], Decision::Reinstate { .. }));
        let exempt = Standing {
            listings: 1,
            complaints: 5,
            ..standing(Port25State::Exempt)
        };
        assert!(d.decide(&exempt).is_empty());
        let blocked = Standing {
            complaints: 5,
            ..standing(Port25State::Blocked)
        };
        assert!(d.decide(&blocked).is_empty());
    }

    #[test]
    fn blocked_fan_out_sends_an_infection_notice_once_a_day() {
        let clock = FixedClock::at(Timestamp(100_000));
        let d = decider(&clock);
        let mut s = Standing {
            flow_destinations: 150,
            ..standing(Port25State::Blocked)
        };
        assert!(matches!(d.decide(&s)[0], Decision::InfectionNotice { .. }));
        s.last_infection_notice = Some(Timestamp(100_000 - 3600));
        assert!(d.decide(&s).is_empty());
        clock.advance(Duration::from_secs(86_400));
        assert_eq!(d.decide(&s).len(), 1);
    }

    #[test]
    fn anomaly_suspends_unless_already_suspended() {
        let clock = FixedClock::at(Timestamp(0));
        let d = decider(&clock);
        let mut s = Standing {
            anomaly: true,
            ..standing(Port25State::Blocked)
        };
        assert!(matches!(d.decide(&s)[0], Decision::Suspend { .. }));
        s.suspended = true;
        assert!(d.decide(&s).is_empty());
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(human(Duration::from_secs(90)), "90s");
    }
}
