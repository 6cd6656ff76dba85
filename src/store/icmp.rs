//! The ICMP detector's window per principal, peer and minute (`icmp`; migration 10): written as
//! the detector hands rows over, read back when the live monitor starts.

use std::fmt::Write as _;

use rusqlite::{params, Transaction};

use super::{PrincipalIds, Store, StoreError};
use crate::rows::IcmpRow;

/// ICMP rows; rows of the same key and run add up.
pub(super) fn write_icmp(
    tx: &Transaction<'_>,
    ids: &mut PrincipalIds<'_, '_>,
    rows: &[IcmpRow],
    run_id: i64,
) -> rusqlite::Result<()> {
    let mut peer = String::with_capacity(48);
    for row in rows {
        let pid = ids.get(row.principal, None)?;
        peer.clear();
        let _ = write!(peer, "{}", row.peer);
        tx.prepare_cached(
            "INSERT INTO icmp (minute, principal_id, peer, requests, replies, carried, signed, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT DO UPDATE SET requests = requests + excluded.requests, replies = replies + excluded.replies,
               carried = carried + excluded.carried, signed = signed + excluded.signed",
        )?
        .execute(params![
            row.minute_us,
            pid,
            peer,
            row.requests,
            row.replies,
            row.carried as i64,
            row.signed,
            run_id
        ])?;
    }
    Ok(())
}

impl Store {
    /// Every ICMP row of minutes from `since_us` on, oldest first.
    pub fn each_icmp_since(&self, since_us: i64, mut f: impl FnMut(IcmpRow)) -> Result<(), StoreError> {
        self.each_since(
            "SELECT p.uid, p.host, i.minute, i.peer, i.requests, i.replies, i.carried, i.signed
             FROM icmp i JOIN principals p ON p.id = i.principal_id
             WHERE i.minute >= ?1 AND i.run_id NOT IN uncounted_runs ORDER BY i.minute",
            since_us,
            |principal, r| {
                let count = |i| u32::try_from(r.get::<_, i64>(i).unwrap_or(0)).unwrap_or(u32::MAX);
                f(IcmpRow {
                    principal,
                    peer: r.get::<_, String>(3).ok()?.parse().ok()?,
                    minute_us: r.get(2).ok()?,
                    requests: count(4),
                    replies: count(5),
                    carried: u64::try_from(r.get::<_, i64>(6).unwrap_or(0)).unwrap_or(0),
                    signed: count(7),
                });
                Some(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::principal::Principal;
    use crate::rows::IcmpRow;
    use crate::store::{Batch, Store};

    #[test]
    fn icmp_rows_add_up_per_key_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("i.db")).unwrap();
        let row = IcmpRow {
            principal: Principal::Uid(1001),
            peer: "2001:db8::1".parse().unwrap(),
            minute_us: 120_000_000,
            requests: 3,
            replies: 1,
            carried: 3000,
            signed: 0,
        };
        for _ in 0..2 {
            let mut b = Batch::default();
            b.add_icmp(vec![row.clone()]);
            store.write_batch(&b, None).unwrap();
        }
        let mut back = Vec::new();
        store.each_icmp_since(60_000_000, |r| back.push(r)).unwrap();
        assert_eq!(back, [IcmpRow { requests: 6, replies: 2, carried: 6000, ..row }]);
        back.clear();
        store.each_icmp_since(180_000_000, |r| back.push(r)).unwrap();
        assert!(back.is_empty());
    }
}
