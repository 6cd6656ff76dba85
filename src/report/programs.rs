//! The main programs behind a report row's egress (`egress_programs`, live runs only): the few
//! that sent the most bytes, with the login user. Rows of replays of plain captures have none.

use serde_json::{json, Value};

use super::table::Cell;
use crate::principal::UserNames;

/// Programs named per row at most.
const TOP: i64 = 3;

/// A subquery giving, per `key` (columns of `egress_programs`), `programs`: a JSON array of
/// its top programs by bytes within the report's filter (?1 since, ?2 until, ?3 uid, ?4
/// direction).
pub(super) fn by(key: &[&str]) -> String {
    let outer = key.join(", ");
    let inner: Vec<String> = key.iter().map(|k| format!("ep.{k}")).collect();
    let inner = inner.join(", ");
    format!(
        "(SELECT {outer}, json_group_array(json_object('exe', exe, 'comm', comm, 'uid', uid, 'login_uid', login_uid,
                 'unknown', unknown, 'bytes', b)) AS programs
          FROM (SELECT {inner}, pr.exe, pr.comm, pr.uid, pr.login_uid, pr.unknown, sum(ep.bytes) AS b,
                       row_number() OVER (PARTITION BY {inner} ORDER BY sum(ep.bytes) DESC, pr.id) AS rank
                FROM egress_programs ep JOIN programs pr ON pr.id = ep.program_id
                JOIN egress e ON e.minute = ep.minute AND e.principal_id = ep.principal_id AND e.proto = ep.proto
                     AND e.dst = ep.dst AND e.dport = ep.dport AND e.run_id = ep.run_id
                WHERE ep.minute >= ?1 / 60000000 * 60000000 AND ep.minute < ?2 AND (?4 IS NULL OR e.direction = ?4)
                  AND ep.run_id NOT IN uncounted_runs
                  AND (?3 IS NULL OR ep.principal_id IN (SELECT id FROM principals WHERE uid = ?3))
                GROUP BY {inner}, pr.id)
          WHERE rank <= {TOP} GROUP BY {outer})"
    )
}

/// The `program` (text) and `programs` (JSON) cells from the subquery's array: most bytes
/// first, user names added.
pub(super) fn cells(programs: Option<String>, names: &mut UserNames) -> [Cell; 2] {
    let mut list: Vec<Value> = programs.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default();
    list.sort_by_key(|p| std::cmp::Reverse(p["bytes"].as_i64().unwrap_or(0)));
    let mut name = |v: &Value| v.as_u64().and_then(|u| u32::try_from(u).ok()).and_then(|u| names.get(u));
    for p in &mut list {
        let (user, login_user) = (name(&p["uid"]), name(&p["login_uid"]));
        p["user"] = json!(user);
        p["login_user"] = json!(login_user);
    }
    let text: Vec<String> = list.iter().map(describe).collect();
    [Cell::Text(text.join(", ")), Cell::Json(Value::Array(list))]
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
