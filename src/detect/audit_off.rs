//! The audit trail going quiet: auditd stopped, auditing switched off, our rules removed. The
//! audit source turns auditd's own records of that into notes; each is an alert, since reads
//! of sensitive files are no longer recorded from then on.

use serde_json::json;

use super::{Detector, Findings};
use crate::alert::{Alert, AlertKind, Severity};
use crate::principal::Principal;
use crate::source::audit::AuditEvent;

#[derive(Debug, Default)]
pub struct AuditOff;

impl Detector for AuditOff {
    fn audit(&mut self, event: &AuditEvent, out: &mut Findings) {
        let AuditEvent::Note(n) = event else { return };
        out.alerts.push(Alert {
            ts_us: n.ts_us,
            kind: AlertKind::AuditOff,
            severity: Severity::High,
            // Only root changes the audit configuration; the record says which login did.
            principal: Principal::Uid(n.by.unwrap_or(0)),
            dst: None,
            bytes: 0,
            summary: format!("audit trail: {}; reads of sensitive files are no longer recorded", n.what),
            details: json!({ "what": n.what }),
        });
    }

    fn counters(&self, _f: &mut dyn FnMut(&'static str, u64)) {}
}
