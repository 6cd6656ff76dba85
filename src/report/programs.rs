//! The main programs behind a report row's egress (`egress_programs`, live runs only): the few
//! that sent the most bytes, with the login user, on a host or in the fleet store. Rows of
//! replays of plain captures have none.

use serde_json::{json, Value};

use super::db::Db;
use super::table::Cell;
use crate::principal::UserNames;

/// Programs named per row at most.
const TOP: i64 = 3;

/// What a report row groups egress by, so its programs are grouped alike.
#[derive(Clone, Copy)]
pub(super) enum By {
    Principal,
    Destination,
}

/// The select-list expression of the programs a [`join`] gives: none in a fleet store made
/// before programs were shipped (its schema 4).
pub(super) fn column(db: &Db) -> &'static str {
    if db.has_programs() {
        "max(g.programs)"
    } else {
        "CAST(NULL AS TEXT)"
    }
}

/// `LEFT JOIN` of a subquery `g` giving, per row of `by`, `programs`: a JSON array of its
/// top programs by bytes within the report's filter ($1 since, $2 until, $3 uid, $4
/// direction, and `observer`: the parameter of the observer filter), joined to the report's
/// egress rows `e`. Centrally each program also carries the names its observer gave its uids.
pub(super) fn join(db: &Db, by: By, observer: &str) -> String {
    if !db.has_programs() {
        return String::new();
    }
    let (outer, on) = match (by, db.central()) {
        (By::Principal, false) => ("principal_id", "g.principal_id = e.principal"),
        (By::Principal, true) => ("observer, principal", "g.observer = e.observer AND g.principal = e.principal"),
        (By::Destination, _) => ("dst, dport, proto", "g.dst = e.dst AND g.dport = e.dport AND g.proto = e.proto"),
    };
    let inner: Vec<String> = outer.split(", ").map(|k| format!("ep.{k}")).collect();
    let inner = inner.join(", ");
    if db.central() {
        return format!(
            "LEFT JOIN (SELECT {outer}, json_agg(json_build_object('exe', exe, 'comm', comm, 'uid', program_uid,
                     'login_uid', login_uid, 'unknown', unknown, 'bytes', b, 'user', program_user,
                     'login_user', login_user))::text AS programs
              FROM (SELECT {inner}, ep.program, max(ep.exe) AS exe, max(ep.comm) AS comm,
                           max(ep.program_uid) AS program_uid, max(ep.login_uid) AS login_uid,
                           max(ep.unknown) AS unknown, max(ep.program_user) AS program_user,
                           max(ep.login_user) AS login_user, CAST(sum(ep.bytes) AS BIGINT) AS b,
                           row_number() OVER (PARTITION BY {inner} ORDER BY sum(ep.bytes) DESC, ep.program) AS rank
                    FROM egress_programs ep
                    JOIN egress x ON x.observer = ep.observer AND x.minute = ep.minute AND x.principal = ep.principal
                         AND x.proto = ep.proto AND x.dst = ep.dst AND x.dport = ep.dport AND x.run_id = ep.run_id
                    WHERE ep.minute >= $1 / 60000000 * 60000000 AND ep.minute < $2 AND ($4 IS NULL OR x.direction = $4)
                      AND ($3 IS NULL OR ep.uid = $3) AND ({observer} IS NULL OR ep.observer = {observer})
                    GROUP BY {inner}, ep.program) r
              WHERE rank <= {TOP} GROUP BY {outer}) g ON {on}"
        );
    }
    format!(
        "LEFT JOIN (SELECT {outer}, json_group_array(json_object('exe', exe, 'comm', comm, 'uid', uid,
                 'login_uid', login_uid, 'unknown', unknown, 'bytes', b)) AS programs
          FROM (SELECT {inner}, pr.exe, pr.comm, pr.uid, pr.login_uid, pr.unknown, sum(ep.bytes) AS b,
                       row_number() OVER (PARTITION BY {inner} ORDER BY sum(ep.bytes) DESC, pr.id) AS rank
                FROM egress_programs ep JOIN programs pr ON pr.id = ep.program_id
                JOIN egress e ON e.minute = ep.minute AND e.principal_id = ep.principal_id AND e.proto = ep.proto
                     AND e.dst = ep.dst AND e.dport = ep.dport AND e.run_id = ep.run_id
                WHERE ep.minute >= $1 / 60000000 * 60000000 AND ep.minute < $2 AND ($4 IS NULL OR e.direction = $4)
                  AND ep.run_id NOT IN uncounted_runs
                  AND ($3 IS NULL OR ep.principal_id IN (SELECT id FROM principals WHERE uid = $3))
                GROUP BY {inner}, pr.id)
          WHERE rank <= {TOP} GROUP BY {outer}) g ON {on}"
    )
}

/// The `program` (text; null when none is known) and `programs` (JSON) cells from the
/// subquery's array: most bytes first, user names added.
pub(super) fn cells(programs: Option<String>, names: &mut UserNames) -> [Cell; 2] {
    let mut list: Vec<Value> = programs.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default();
    list.sort_by_key(|p| std::cmp::Reverse(p["bytes"].as_i64().unwrap_or(0)));
    let mut name = |v: &Value| v.as_u64().and_then(|u| u32::try_from(u).ok()).and_then(|u| names.get(u));
    // The fleet store's programs carry the names their observer gave (null included); a
    // host's are named here, where they were recorded.
    for p in list.iter_mut().filter(|p| p.get("user").is_none()) {
        let (user, login_user) = (name(&p["uid"]), name(&p["login_uid"]));
        p["user"] = json!(user);
        p["login_user"] = json!(login_user);
    }
    // None known (a replay of a capture): no program, not an empty name.
    let text = (!list.is_empty()).then(|| list.iter().map(describe).collect::<Vec<_>>().join(", "));
    [Cell::opt_text(text), Cell::Json(Value::Array(list))]
}

/// The `program` cell of an alert: its `details.process`, as in [`cells`].
pub(super) fn of_alert(details: &Value, names: &mut UserNames) -> Cell {
    let process = &details["process"];
    if !process.is_object() {
        return Cell::Null;
    }
    let [text, _] = cells(Some(Value::Array(vec![process.clone()]).to_string()), names);
    text
}

/// `/usr/bin/python3.11 (login alice)`, or `unknown (socket_gone)`.
fn describe(p: &Value) -> String {
    if let Some(why) = p["unknown"].as_str() {
        return format!("unknown ({why})");
    }
    let exe = p["exe"].as_str().filter(|e| !e.is_empty());
    let program = exe.or(p["comm"].as_str()).unwrap_or_default();
    match (p["login_user"].as_str(), p["login_uid"].as_u64()) {
        (Some(user), _) => format!("{program} (login {user})"),
        (None, Some(uid)) => format!("{program} (login uid {uid})"),
        (None, None) => program.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::Format;
    use super::super::{destinations, users, Filter, DESTINATIONS, USERS};
    use super::Db;
    use crate::principal::{Dst, Principal, UserNames};
    use crate::rows::{EgressRow, Program, ProgramRow, Recredit};
    use crate::store::{Batch, Store};

    fn row(principal: Principal, bytes: u64) -> EgressRow {
        EgressRow {
            principal,
            gid: None,
            dst: Dst { addr: [192, 0, 2, 9].into(), port: 50022, proto: 6 },
            minute_us: 60_000_000,
            packets: bytes / 1000,
            bytes,
            first_us: 60_000_000,
            last_us: 61_000_000,
            direction: Default::default(),
            dst_name: None,
        }
    }

    fn program(principal: Principal, program: Program, bytes: u64) -> ProgramRow {
        let r = row(principal, bytes);
        ProgramRow { principal, dst: r.dst, minute_us: r.minute_us, program, packets: r.packets, bytes }
    }

    /// The scp pull: root's row (sshd's socket) written before the lookup saw the login; the
    /// correction moves it to the login user, whose row then names sshd and the login. Programs
    /// rank by bytes; a flow no lookup could name says why.
    #[test]
    fn recredited_rows_move_and_reports_name_the_main_programs_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("p.db")).unwrap();
        let (root, alice) = (Principal::Uid(0), Principal::Uid(4_000_001));
        let mut b = Batch::default();
        b.add_rows(vec![row(root, 6000)]);
        store.write_batch(&b, None).unwrap();
        let sshd =
            Program::Found { exe: "/usr/sbin/sshd".into(), comm: "sshd".into(), uid: 0, login_uid: Some(4_000_001) };
        let mut b = Batch::default();
        b.add_recredits(vec![Recredit { from: root, rows: vec![row(alice, 6000)] }]);
        b.add_programs(vec![program(alice, sshd, 5000), program(alice, Program::Unknown("socket_gone"), 1000)]);
        // A process names itself: its comm and exe are shown escaped.
        let hostile = Program::Found { exe: "".into(), comm: "=x\x1b[2J".into(), uid: 0, login_uid: None };
        b.add_programs(vec![program(root, hostile, 1000)]);
        b.add_rows(vec![row(root, 1000)]);
        store.write_batch(&b, None).unwrap();

        let db = Db::Local { store: &store, observer: "h".into() };
        let mut t = USERS.table();
        users(&db, &Filter::default(), &mut UserNames::default(), None, &mut t).unwrap();
        let json = t.json();
        let rows = json.as_array().unwrap();
        assert_eq!(rows.len(), 2, "{json:#}");
        assert_eq!((rows[0]["uid"].as_i64(), rows[0]["bytes"].as_i64()), (Some(4_000_001), Some(6000)));
        assert_eq!(rows[1]["bytes"], 1000, "root keeps only its later 1000 bytes: {json:#}");
        for format in [Format::Table, Format::Csv] {
            let mut out = Vec::new();
            t.write(format, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains('\x1b') && text.contains("\\x1b[2J"), "{text}");
            assert!(format == Format::Table || text.contains(",'=x"), "a formula in CSV: {text}");
        }
        assert_eq!(rows[0]["program"], "/usr/sbin/sshd (login uid 4000001), unknown (socket_gone)");
        assert_eq!(rows[0]["programs"][0]["comm"], "sshd");
        assert_eq!(rows[0]["programs"][0]["bytes"], 5000);
        assert_eq!(rows[0]["programs"][1]["unknown"], "socket_gone");

        let mut t = DESTINATIONS.table();
        destinations(&db, &Filter::default(), None, &mut t).unwrap();
        let json = t.json();
        assert_eq!(json[0]["senders"], 2);
        assert_eq!(json[0]["programs"][0]["login_uid"], 4_000_001);
        assert_eq!(json[0]["programs"].as_array().unwrap().len(), 3);
        // A user filter leaves the other users' programs out with their rows.
        let mut t = DESTINATIONS.table();
        destinations(&db, &Filter { uid: Some(0), ..Filter::default() }, None, &mut t).unwrap();
        let json = t.json();
        assert_eq!(json[0]["programs"].as_array().unwrap().len(), 1, "{json:#}");
        assert_eq!(json[0]["programs"][0]["comm"], "=x\x1b[2J");
    }
}
