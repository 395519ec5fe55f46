//! The engine: attributes evidence to the subscriber who held the address at its
//! time, records it (opening or extending their case), asks `decide` what to do and
//! does it: re-instates the port-25 block, suspends sending, stores the customer
//! notice and hands it to the mail queue.
//!
//! Every evidence source (complaints, DNSBL, flows, submission anomalies) goes
//! through here, so the rules are applied the same way whatever the source.

use std::net::IpAddr;
use std::sync::Arc;

use policy::{Actor, Clock, Pools, Port25Action, Timestamp};
use serde::Serialize;
use store::{EvidenceRecord, NewEvidence, NewNotice, Store, StoreError};

use crate::decide::{Decider, Decision, Standing, Thresholds};
use crate::notice::{compose, EvidenceLine, NoticeKind};

/// Who held an address when, or why nobody is blamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attribution {
    pub login: Option<String>,
    /// Why the evidence is unattributed, e.g. "no lease for 100.64.1.1 at ...".
    pub unattributed: Option<String>,
}

/// One action the engine took.
#[derive(Clone, Debug, Serialize)]
pub struct ActionTaken {
    pub login: String,
    #[serde(flatten)]
    pub decision: Decision,
    /// The notice recorded for the customer, and its status (`queued`,
    /// `pending-mail`, `no-address`).
    pub notice_id: Option<i64>,
    pub notice_status: Option<String>,
}

/// The store's clock as a [`Clock`], so windows follow the store's idea of now.
struct StoreClock(Store);

impl Clock for StoreClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}

/// The abuse loop's decisions over one store.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    pools: Pools,
    decider: Decider,
    /// Sender domain of notices (`abuse@HOST`).
    hostname: String,
}

/// The actor recorded for automatic changes.
pub fn actor() -> Actor {
    Actor::System("abuse".into())
}

impl Engine {
    /// An engine with `config`'s pools and thresholds, reading time from the store.
    pub fn new(config: &config::Config, store: Store) -> Engine {
        let clock: Arc<dyn Clock> = Arc::new(StoreClock(store.clone()));
        Engine::with_clock(config, store, clock)
    }

    pub fn with_clock(config: &config::Config, store: Store, clock: Arc<dyn Clock>) -> Engine {
        Engine {
            pools: config.network.pools(),
            decider: Decider::new(Thresholds::from_config(&config.abuse.thresholds), clock),
            hostname: config.submission.hostname.clone(),
            store,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.decider.thresholds
    }

    pub fn now(&self) -> Timestamp {
        self.decider.now()
    }

    /// The subscriber who held `ip` at `at`, or why nobody.
    pub async fn attribute(
        &self,
        ip: Option<IpAddr>,
        at: Timestamp,
    ) -> Result<Attribution, StoreError> {
        let Some(ip) = ip else {
            return Ok(Attribution {
                login: None,
                unattributed: Some("no source address in the evidence".into()),
            });
        };
        if self.pools.classify(ip).is_none() {
            return Ok(Attribution {
                login: None,
                unattributed: Some(format!("address {ip} is outside our pools")),
            });
        }
        Ok(match self.store.whois(ip, at).await? {
            Some(lease) => Attribution {
                login: Some(lease.lease.login),
                unattributed: None,
            },
            None => Attribution {
                login: None,
                unattributed: Some(format!("no lease for {ip} at {at}")),
            },
        })
    }

    /// [`Engine::attribute`] for a batch, with a few store queries for all of it.
    pub async fn attribute_many(
        &self,
        items: &[(Option<IpAddr>, Timestamp)],
    ) -> Result<Vec<Attribution>, StoreError> {
        let lookups: Vec<(IpAddr, Timestamp)> = items
            .iter()
            .filter_map(|(ip, at)| {
                ip.filter(|ip| self.pools.classify(*ip).is_some())
                    .map(|ip| (ip, *at))
            })
            .collect();
        let mut held = self.store.whois_many(&lookups).await?.into_iter();
        let mut out = Vec::with_capacity(items.len());
        for (ip, at) in items {
            out.push(match ip {
                None => Attribution {
                    login: None,
                    unattributed: Some("no source address in the evidence".into()),
                },
                Some(ip) if self.pools.classify(*ip).is_none() => Attribution {
                    login: None,
                    unattributed: Some(format!("address {ip} is outside our pools")),
                },
                Some(ip) => match held.next().flatten() {
                    Some(lease) => Attribution {
                        login: Some(lease.lease.login),
                        unattributed: None,
                    },
                    None => Attribution {
                        login: None,
                        unattributed: Some(format!("no lease for {ip} at {at}")),
                    },
                },
            });
        }
        Ok(out)
    }

    /// Records attributed evidence and applies the rules. `None` when the same
    /// evidence was already recorded.
    pub async fn record(
        &self,
        evidence: NewEvidence,
        flow_destinations: u32,
        anomaly: bool,
    ) -> Result<Option<(EvidenceRecord, Vec<ActionTaken>)>, StoreError> {
        let Some(rec) = self.store.record_evidence(&evidence).await? else {
            return Ok(None);
        };
        tracing::info!(
            kind = %rec.kind,
            ip = rec.ip.as_deref().unwrap_or("-"),
            login = rec.login.as_deref().unwrap_or("-"),
            unattributed = rec.unattributed.as_deref().unwrap_or(""),
            "abuse evidence recorded"
        );
        let actions = match &rec.login {
            Some(login) => self.evaluate(login, flow_destinations, anomaly).await?,
            None => Vec::new(),
        };
        Ok(Some((rec, actions)))
    }

    /// Applies the rules to `login` now.
    pub async fn evaluate(
        &self,
        login: &str,
        flow_destinations: u32,
        anomaly: bool,
    ) -> Result<Vec<ActionTaken>, StoreError> {
        let Some(sub) = self.store.find_subscriber(login).await? else {
            return Ok(Vec::new());
        };
        let since = self.decider.complaint_since();
        let complaints = self.store.count_evidence(login, "complaint", since).await?;
        let listings = self.store.count_evidence(login, "listing", since).await?;
        let standing = Standing {
            login: login.to_string(),
            port25: sub.port25,
            suspended: sub.suspended,
            complaints: u32::try_from(complaints).unwrap_or(u32::MAX),
            listings: u32::try_from(listings).unwrap_or(u32::MAX),
            flow_destinations,
            anomaly,
            last_infection_notice: self.store.last_notice_at(login, "infection").await?,
        };
        let mut taken = Vec::new();
        for decision in self.decider.decide(&standing) {
            if let Some(a) = self.apply(&sub, decision).await? {
                taken.push(a);
            }
        }
        Ok(taken)
    }

    async fn apply(
        &self,
        sub: &policy::Subscriber,
        decision: Decision,
    ) -> Result<Option<ActionTaken>, StoreError> {
        let login = &sub.login;
        let kind = match &decision {
            Decision::Reinstate { reason } => {
                match self
                    .store
                    .transition(login, Port25Action::Reinstate, &actor(), reason)
                    .await
                {
                    Ok((from, to)) => {
                        tracing::warn!(login = %login, %from, %to, reason = %reason, "port 25 re-instated after abuse")
                    }
                    Err(StoreError::Transition { source, .. }) => {
                        tracing::info!(login = %login, "not re-instated: {source}");
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                }
                NoticeKind::Reinstated
            }
            Decision::InfectionNotice { reason } => {
                tracing::warn!(login = %login, reason = %reason, "infection notice");
                NoticeKind::Infection
            }
            Decision::Suspend { reason } => {
                if !self
                    .store
                    .set_suspended(login, true, &actor(), reason)
                    .await?
                {
                    return Ok(None);
                }
                tracing::warn!(login = %login, reason = %reason, "sending suspended");
                NoticeKind::Suspended
            }
        };
        let notice = self.notify(sub, kind, decision.reason()).await?;
        Ok(Some(ActionTaken {
            login: login.clone(),
            decision,
            notice_id: Some(notice.id),
            notice_status: Some(notice.status),
        }))
    }

    /// Stores the notice and queues it as an email when the subscriber has an address.
    async fn notify(
        &self,
        sub: &policy::Subscriber,
        kind: NoticeKind,
        reason: &str,
    ) -> Result<store::NoticeRecord, StoreError> {
        let case = self.store.open_case(&sub.login).await?;
        let evidence = match &case {
            Some(c) => self.store.case_evidence(c.id).await?,
            None => Vec::new(),
        };
        let lines: Vec<EvidenceLine> = evidence
            .iter()
            .map(|e| EvidenceLine {
                what: e.summary.clone(),
                ip: e.ip.clone(),
                at: e.at,
            })
            .collect();
        let (subject, body) = compose(kind, &sub.login, reason, &lines);
        let notice = self
            .store
            .record_notice(&NewNotice {
                login: sub.login.clone(),
                case_id: case.map(|c| c.id),
                kind: kind.as_str().into(),
                recipient: sub.email.clone(),
                subject: subject.clone(),
                body: body.clone(),
                status: if sub.email.is_some() {
                    "pending-mail".into()
                } else {
                    "no-address".into()
                },
            })
            .await?;
        let Some(to) = &sub.email else {
            tracing::warn!(login = %sub.login, "notice recorded, but the subscriber has no email address");
            return Ok(notice);
        };
        let id = store::new_queue_id();
        let from = format!("abuse@{}", self.hostname);
        let message = crate::mailer::render(&from, to, &subject, &body, &id, self.now());
        let queued = store::NewQueuedMessage {
            id: id.clone(),
            login: "abuse".into(),
            mail_from: from,
            recipients: vec![store::NewQueuedRecipient {
                address: to.clone(),
                ..Default::default()
            }],
            body: std::sync::Arc::new(message),
            ..Default::default()
        };
        match self.store.enqueue(&queued).await {
            Ok(_) => {
                self.store.set_notice_queued(notice.id, &id).await?;
                Ok(store::NoticeRecord {
                    status: "queued".into(),
                    queue_id: Some(id),
                    ..notice
                })
            }
            Err(e) => {
                tracing::error!(login = %sub.login, "notice kept as pending-mail: cannot queue it: {e}");
                Ok(notice)
            }
        }
    }
}
