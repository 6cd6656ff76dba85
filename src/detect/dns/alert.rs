//! Alert wording: what a pair's episode and its escalations say, and names made terminal-safe.

use std::collections::BTreeMap;

use serde_json::json;

use super::pair::{Pair, BYTES, ENCODED, MIX, ODD, QUERIES, UNIQUE};
use super::DnsConfig;

use crate::alert::{Alert, AlertKind, Severity};
use crate::decode::dns::Query;
use crate::decode::{dns, Packet};
use crate::detect::names::Alphabet;
use crate::detect::tally::Step;
use crate::principal::Principal;
use crate::units::{human_bytes, human_duration};

pub(super) fn severity(step: Step) -> (Severity, u32) {
    match step {
        Step::Open => (Severity::Medium, 0),
        Step::Escalate(n) => (Severity::High, n),
    }
}

pub(super) fn escalated(escalation: u32, bytes: u64) -> String {
    match escalation {
        0 => String::new(),
        n => format!(" (escalation {n}: ~{} carried so far)", human_bytes(bytes)),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn pair_alert(
    cfg: &DnsConfig,
    window_us: i64,
    step: Step,
    who: Principal,
    pair: &Pair,
    sums: [u32; 5],
    p: &Packet<'_>,
    ts: i64,
) -> Alert {
    let (severity, escalation) = severity(step);
    let mut rules = Vec::new();
    if sums[ENCODED] >= cfg.encoded_names {
        rules.push("encoded_names");
    }
    if sums[UNIQUE] >= cfg.unique_names {
        rules.push("unique_names");
    }
    if u64::from(sums[BYTES]) >= cfg.unique_bytes {
        rules.push("unique_bytes");
    }
    if pair.burst_now() >= cfg.burst_names {
        rules.push("burst_names");
    }
    let mut types = BTreeMap::new();
    for (i, &n) in pair.types.iter().enumerate().filter(|(_, &n)| n > 0) {
        let name = MIX.get(i).map_or_else(|| "other".into(), |&t| dns::type_name(t));
        types.insert(name.into_owned(), n);
    }
    let alphabets: Vec<&str> = [Alphabet::Hex, Alphabet::Base32, Alphabet::Base64, Alphabet::Binary]
        .into_iter()
        .filter(|a| pair.alphabets & (1 << *a as u32) != 0)
        .map(Alphabet::as_str)
        .collect();
    let minutes = (window_us as f64 / 60e6).max(1.0 / 60.0);
    Alert {
        ts_us: ts,
        kind: AlertKind::DnsTunnel,
        severity,
        principal: who,
        dst: Some(pair.domain.clone()),
        bytes: pair.carried,
        summary: format!(
            "{who} sent {} unique names ({} of names, {} encoded-looking) under {} within {}: ~{} carried out through DNS{}",
            sums[UNIQUE],
            human_bytes(u64::from(sums[BYTES])),
            sums[ENCODED],
            pair.domain,
            human_duration(cfg.window),
            human_bytes(pair.carried),
            escalated(escalation, pair.carried),
        ),
        details: json!({
            "domain": pair.domain,
            "resolver": p.dst.to_string(),
            "window_secs": cfg.window.as_secs(),
            "rules": rules,
            "queries": sums[QUERIES],
            "unique_names": sums[UNIQUE],
            "unique_name_bytes": sums[BYTES],
            "burst_names": pair.burst_now(),
            "burst_window_ms": cfg.burst_window.as_millis() as u64,
            "encoded_names": sums[ENCODED],
            "odd_type_queries": sums[ODD],
            "queries_per_min": (f64::from(sums[QUERIES]) / minutes * 10.0).round() / 10.0,
            "types": types,
            "alphabets": alphabets,
            "longest_name": pair.longest_name,
            "samples": pair.samples,
            "appended_suffix": pair.appended,
            "estimated_bytes": pair.carried,
            "escalation": escalation,
        }),
    }
}

/// Terminal-safe text of raw name bytes.
pub(super) fn display(name: &[u8]) -> String {
    if name.is_empty() {
        return ".".into();
    }
    crate::escape::printable_bytes(name).into_owned()
}

/// Terminal-safe text of a query name: each label escaped, a `.` inside a label as `\x2e` so
/// the label boundaries stay visible.
pub(super) fn display_name(q: &Query<'_>) -> String {
    let mut out = String::with_capacity(q.qname.len() + 8);
    for (i, label) in q.qname.labels().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for part in label.split(|&b| b == b'.').enumerate() {
            if part.0 > 0 {
                out.push_str("\\x2e");
            }
            out.push_str(&crate::escape::printable_bytes(part.1));
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}
