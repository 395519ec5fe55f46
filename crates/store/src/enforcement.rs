//! Queries that network enforcement (the nftables table) needs from the store: which
//! addresses deviate from their pool's default. Dynamic addresses are blocked unless
//! their holder is `opted-out`; static addresses are open unless their holder is
//! `reinstated`. So only those two states produce set elements, and every query here
//! starts from the subscribers in them (indexed by state), joined to their open
//! leases or static addresses. Deciding what the network does with them is the
//! `enforce` crate's job, not this one's.

use policy::{IpNet, Port25State};

use crate::db::{Row, RowRef, Value};
use crate::error::StoreError;
use crate::{params, Store};

/// Schema version 3: indexes for the enforcement queries. `subscribers (port25)` finds
/// the few opted-out and reinstated subscribers among a million; the partial index on
/// open leases answers "open leases of this login" without touching history. Both
/// cover their queries (`end_at` included so SQLite needs no table lookup), which
/// makes the join for a full load one index probe per subscriber.
pub(crate) const MIGRATION: &str = "
CREATE INDEX subscribers_port25 ON subscribers (port25, login);
CREATE INDEX leases_open_login ON leases (login, net, end_at) WHERE end_at IS NULL;
";

/// One address or prefix held by a subscriber, as enforcement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldNet {
    pub login: String,
    pub net: IpNet,
}

/// What enforcement needs to know about one subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnforcementState {
    pub login: String,
    pub port25: Port25State,
    /// Prefixes of the subscriber's open leases (static addresses included).
    pub open_leases: Vec<IpNet>,
    /// The subscriber's static addresses.
    pub static_ips: Vec<IpNet>,
}

fn held(r: &Row) -> Result<HeldNet, StoreError> {
    Ok(HeldNet {
        login: r.text(0)?,
        net: parse_net(&r.text(1)?)?,
    })
}

fn held_ref(r: &RowRef<'_>) -> Result<HeldNet, StoreError> {
    Ok(HeldNet {
        login: r.str(0)?.to_owned(),
        net: parse_net(r.str(1)?)?,
    })
}

fn parse_net(s: &str) -> Result<IpNet, StoreError> {
    s.parse()
        .map_err(|e: policy::NetError| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Open leases of every subscriber whose port-25 state is `opted-out`.
    pub async fn opted_out_open_leases(&self) -> Result<Vec<HeldNet>, StoreError> {
        let mut chunks = self.opted_out_open_leases_chunks(usize::MAX);
        let mut out = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            out.extend(chunk?);
        }
        Ok(out)
    }

    /// [`Store::opted_out_open_leases`] in chunks of up to `chunk` rows as they are
    /// read: a full load reads a million of them and builds its state meanwhile.
    /// Rows are read in place (no intermediate values); an error ends the stream.
    pub fn opted_out_open_leases_chunks(
        &self,
        chunk: usize,
    ) -> tokio::sync::mpsc::UnboundedReceiver<Result<Vec<HeldNet>, StoreError>> {
        self.db.query_chunks(
            "SELECT l.login, l.net FROM subscribers s JOIN leases l ON l.login = s.login \
             WHERE s.port25 = $1 AND l.end_at IS NULL",
            params![Port25State::OptedOut.as_str()],
            chunk,
            held_ref,
        )
    }

    /// Static addresses of every subscriber whose port-25 state is `reinstated`.
    pub async fn reinstated_static_addresses(&self) -> Result<Vec<HeldNet>, StoreError> {
        self.db
            .query_map(
                "SELECT a.login, a.net FROM subscribers s JOIN static_addresses a ON a.login = s.login \
                 WHERE s.port25 = $1",
                params![Port25State::Reinstated.as_str()],
                held_ref,
            )
            .await
    }

    /// The current open leases of one subscriber.
    pub async fn open_leases_of(&self, login: &str) -> Result<Vec<IpNet>, StoreError> {
        let rows = self
            .db
            .query(
                "SELECT net FROM leases WHERE login = $1 AND end_at IS NULL ORDER BY net",
                params![login],
            )
            .await?;
        rows.iter().map(|r| parse_net(&r.text(0)?)).collect()
    }

    /// State, open leases and static addresses of each of `logins` that exists
    /// (unknown logins are left out). Three queries per 500 logins.
    pub async fn enforcement_states(
        &self,
        logins: &[String],
    ) -> Result<Vec<EnforcementState>, StoreError> {
        let mut out = Vec::with_capacity(logins.len());
        for chunk in logins.chunks(500) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let values = || chunk.iter().map(Value::from).collect::<Vec<_>>();
            let subs = self
                .db
                .query(
                    &format!("SELECT login, port25 FROM subscribers WHERE login IN ({list})"),
                    values(),
                )
                .await?;
            let leases = self
                .db
                .query(
                    &format!(
                        "SELECT login, net FROM leases WHERE login IN ({list}) AND end_at IS NULL"
                    ),
                    values(),
                )
                .await?;
            let statics = self
                .db
                .query(
                    &format!("SELECT login, net FROM static_addresses WHERE login IN ({list})"),
                    values(),
                )
                .await?;
            let first = out.len();
            for r in &subs {
                out.push(EnforcementState {
                    login: r.text(0)?,
                    port25: r.text(1)?.parse().map_err(StoreError::Corrupt)?,
                    open_leases: Vec::new(),
                    static_ips: Vec::new(),
                });
            }
            let index: std::collections::HashMap<String, usize> = out[first..]
                .iter()
                .enumerate()
                .map(|(i, s)| (s.login.clone(), first + i))
                .collect();
            for r in &leases {
                let h = held(r)?;
                if let Some(&i) = index.get(&h.login) {
                    out[i].open_leases.push(h.net);
                }
            }
            for r in &statics {
                let h = held(r)?;
                if let Some(&i) = index.get(&h.login) {
                    out[i].static_ips.push(h.net);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use policy::{Actor, LeaseSource, Plan, Port25Action};

    use crate::{NewLease, NewSubscriber, Store};

    fn net(s: &str) -> policy::IpNet {
        s.parse().unwrap()
    }

    async fn subscriber(store: &Store, login: &str, plan: Plan, statics: &[&str]) {
        let new = NewSubscriber {
            login: login.into(),
            display_name: None,
            email: None,
            plan,
            static_ips: statics.iter().map(|s| net(s)).collect(),
            password_hash: None,
        };
        store
            .add_subscriber(&new, &Actor::Operator("t".into()))
            .await
            .unwrap();
    }

    async fn lease(store: &Store, login: &str, prefix: &str, end: Option<i64>) {
        let l = NewLease {
            login: login.into(),
            net: net(prefix),
            start: policy::Timestamp(1),
            end: end.map(policy::Timestamp),
            source: LeaseSource::Import,
            session_id: None,
            nas: None,
        };
        store
            .import_leases(&[l], &Actor::Operator("t".into()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn enforcement_queries_pick_the_deviating_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("e.db").display()))
            .await
            .unwrap();
        deviating_subscribers(&store).await;
    }

    #[tokio::test]
    async fn enforcement_queries_on_postgres() {
        let url = crate::testing::fresh_postgres_schema("enforcement")
            .await
            .expect("the test PostgreSQL at 127.0.0.1:5432");
        deviating_subscribers(&Store::open(&url).await.unwrap()).await;
    }

    async fn deviating_subscribers(store: &Store) {
        let store = store.clone();
        let op = Actor::Operator("t".into());
        subscriber(&store, "open", Plan::Dynamic, &[]).await;
        lease(&store, "open", "100.64.0.9", None).await;
        lease(&store, "open", "2001:db8:8000:100::/56", None).await;
        lease(&store, "open", "100.64.0.8", Some(5)).await;
        store
            .transition(
                "open",
                Port25Action::RequestOptOut { aup_accepted: true },
                &op,
                "",
            )
            .await
            .unwrap();
        store
            .transition("open", Port25Action::ApproveOptOut, &op, "")
            .await
            .unwrap();
        subscriber(&store, "closed", Plan::Dynamic, &[]).await;
        lease(&store, "closed", "100.64.0.10", None).await;
        subscriber(&store, "abuser", Plan::Static, &["198.51.100.7"]).await;
        store
            .transition("abuser", Port25Action::Block, &op, "spam")
            .await
            .unwrap();
        subscriber(&store, "fine", Plan::Static, &["198.51.100.8"]).await;

        let mut open = store.opted_out_open_leases().await.unwrap();
        open.sort_by_key(|h| h.net);
        let nets: Vec<String> = open
            .iter()
            .map(|h| format!("{} {}", h.login, h.net))
            .collect();
        assert_eq!(
            nets,
            ["open 100.64.0.9", "open 2001:db8:8000:100::/56"],
            "closed leases and other states left out"
        );
        let blocked = store.reinstated_static_addresses().await.unwrap();
        assert_eq!(blocked.len(), 1);
        assert_eq!(
            (blocked[0].login.as_str(), blocked[0].net),
            ("abuser", net("198.51.100.7"))
        );
        assert_eq!(
            store.open_leases_of("closed").await.unwrap(),
            vec![net("100.64.0.10")]
        );

        let logins = ["abuser", "nobody", "open"].map(String::from);
        let mut states = store.enforcement_states(&logins).await.unwrap();
        states.sort_by(|a, b| a.login.cmp(&b.login));
        assert_eq!(states.len(), 2, "unknown logins are left out");
        assert_eq!(states[0].port25, policy::Port25State::Reinstated);
        assert_eq!(states[0].static_ips, vec![net("198.51.100.7")]);
        assert_eq!(
            states[0].open_leases,
            vec![net("198.51.100.7")],
            "a static address is an open lease"
        );
        assert_eq!(states[1].port25, policy::Port25State::OptedOut);
        assert_eq!(states[1].open_leases.len(), 2);

        // In chunks as read: the same rows, none lost at the chunk edges.
        let mut chunks = store.opted_out_open_leases_chunks(1);
        let mut streamed = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= 1);
            streamed.extend(chunk);
        }
        streamed.sort_by_key(|h| h.net);
        assert_eq!(streamed, open);
    }
}
