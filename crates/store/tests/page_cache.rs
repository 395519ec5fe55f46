//! The store's page-cache shim (`page_cache.rs`) under SQLite's B-tree renumbering.
//! A process of its own: the shim is installed only before SQLite initializes, which
//! the first store opened in the process does.

use std::collections::BTreeMap;

/// Random inserts and deletes on an indexed table with a cache far smaller than the
/// data: pages split, freed pages are reused out of order (so SQLite parks pages
/// while renumbering them), pages are evicted and read back. Every row must read
/// back as written and the file must pass SQLite's integrity check.
#[tokio::test]
async fn renumbered_pages_keep_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let _store = store::Store::open(&url).await.unwrap();
    assert_eq!(
        store::parked_pages(),
        Some(0),
        "the first store opened installs the shim"
    );

    let db = rusqlite::Connection::open(dir.path().join("churn.db")).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA cache_size=64;
         CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL, v TEXT NOT NULL);
         CREATE INDEX t_k ON t (k);",
    )
    .unwrap();
    let mut model = BTreeMap::new();
    // A fixed linear congruential sequence: the same churn on every run.
    let mut state = 1u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 16
    };
    let mut id = 0i64;
    for round in 0..40 {
        let tx = db.unchecked_transaction().unwrap();
        for _ in 0..500 {
            id += 1;
            let k = format!("{:016x}", next());
            let v = format!("{round}-{}", "x".repeat((next() % 200) as usize));
            tx.execute("INSERT INTO t (id, k, v) VALUES (?1, ?2, ?3)", (id, &k, &v))
                .unwrap();
            model.insert(id, (k, v));
        }
        // Every other round frees about a third of the rows: their pages go to the
        // freelist, in no order, for the next inserts.
        if round % 2 == 1 {
            let doomed: Vec<i64> = model.keys().copied().filter(|_| next() % 3 == 0).collect();
            for d in doomed {
                tx.execute("DELETE FROM t WHERE id = ?1", [d]).unwrap();
                model.remove(&d);
            }
        }
        tx.commit().unwrap();
    }

    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mut stmt = db.prepare("SELECT id, k, v FROM t ORDER BY id").unwrap();
    let rows: BTreeMap<i64, (String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, model);
    // And through the index, in key order.
    let by_index: Vec<String> = db
        .prepare("SELECT k FROM t INDEXED BY t_k ORDER BY k")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut keys: Vec<String> = model.values().map(|(k, _)| k.clone()).collect();
    keys.sort();
    assert_eq!(by_index, keys);
    assert!(
        store::parked_pages().unwrap() > 0,
        "the churn renumbered pages through the shim"
    );
}
