//! The MTA-STS policy cache (RFC 8461 section 5): the last policy fetched for each
//! recipient domain, shared by every delivery node and kept across restarts, so a
//! policy keeps protecting a domain while its policy host is unreachable (an
//! attacker who blocks the fetch must not downgrade delivery). Parsing and
//! enforcing the policy is the `delivery` crate's job; this module only keeps text.

use policy::Timestamp;

use crate::db::Stmt;
use crate::error::StoreError;
use crate::{params, Store};

/// Schema version 8: cached MTA-STS policies.
pub(crate) const MIGRATION: &str = "
CREATE TABLE mta_sts_policies (
    domain TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
";

/// A cached policy of one domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedStsPolicy {
    pub domain: String,
    /// The `id` of the `_mta-sts` TXT record the policy was fetched for.
    pub policy_id: String,
    /// The policy file as fetched.
    pub policy: String,
    pub fetched_at: Timestamp,
    /// `fetched_at` plus the policy's `max_age`.
    pub expires_at: Timestamp,
}

impl Store {
    /// The cached policy of `domain` (lower case), expired or not.
    pub async fn mta_sts_policy(
        &self,
        domain: &str,
    ) -> Result<Option<CachedStsPolicy>, StoreError> {
        let row = self
            .db
            .query_one(
                "SELECT domain, policy_id, policy, fetched_at, expires_at FROM mta_sts_policies WHERE domain = $1",
                params![domain],
            )
            .await?;
        row.map(|r| {
            Ok(CachedStsPolicy {
                domain: r.text(0)?,
                policy_id: r.text(1)?,
                policy: r.text(2)?,
                fetched_at: Timestamp(r.int(3)?),
                expires_at: Timestamp(r.int(4)?),
            })
        })
        .transpose()
    }

    /// Stores (or replaces) the policy of `p.domain`.
    pub async fn put_mta_sts_policy(&self, p: &CachedStsPolicy) -> Result<(), StoreError> {
        self.db
            .tx(
                vec![Stmt::new(
                    "INSERT INTO mta_sts_policies (domain, policy_id, policy, fetched_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (domain) DO UPDATE SET policy_id = excluded.policy_id, policy = excluded.policy, \
                     fetched_at = excluded.fetched_at, expires_at = excluded.expires_at",
                    params![&p.domain, &p.policy_id, &p.policy, p.fetched_at.0, p.expires_at.0],
                )],
                false,
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn policies_are_replaced_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}", dir.path().join("s.db").display());
        let postgres = crate::testing::fresh_postgres_schema("mta_sts")
            .await
            .unwrap();
        for url in [sqlite, postgres] {
            replaced_and_kept(&url).await;
        }
    }

    async fn replaced_and_kept(url: &str) {
        let store = Store::open(url).await.unwrap();
        assert_eq!(store.mta_sts_policy("example.test").await.unwrap(), None);
        let mut p = CachedStsPolicy {
            domain: "example.test".into(),
            policy_id: "a1".into(),
            policy: "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n".into(),
            fetched_at: Timestamp(1_000),
            expires_at: Timestamp(87_400),
        };
        store.put_mta_sts_policy(&p).await.unwrap();
        p.policy_id = "b2".into();
        p.fetched_at = Timestamp(2_000);
        store.put_mta_sts_policy(&p).await.unwrap();
        drop(store);
        let store = Store::open(url).await.unwrap();
        assert_eq!(store.mta_sts_policy("example.test").await.unwrap(), Some(p));
    }
}
