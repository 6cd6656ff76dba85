//! Alerts: what the detectors conclude, in the one shape every store, report and sink uses.

use serde::Deserialize;
use serde_json::Value;

use crate::principal::Principal;

/// How urgent an alert is; rules and sinks filter on it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub(crate) fn medium() -> Self {
        Severity::Medium
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    /// The severity [`as_str`](Self::as_str) names.
    pub fn from_name(name: &str) -> Option<Severity> {
        [Severity::Low, Severity::Medium, Severity::High].into_iter().find(|s| s.as_str() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertKind {
    /// A principal's outbound bytes within a window reached a threshold.
    Volume,
    /// Query names to one registered domain look like data leaving through DNS.
    DnsTunnel,
    /// Echo traffic to one peer carries data (varied payloads, tunnel signatures).
    IcmpTunnel,
    /// The live monitor lost packets (receive buffer overrun): egress was undercounted.
    MonitorLoss,
    /// A user read a sensitive file (auditd) and then sent a meaningful part of its size out.
    SensitiveEgress,
    /// New connections in the kernel audit trail (NETFILTER_PKT) that NFLOG never delivered.
    AuditMismatch,
    /// The audit trail went quiet: auditd stopped, auditing switched off, our rules removed.
    AuditOff,
    /// An hour far above what the principal usually sends at that hour.
    Baseline,
}

impl AlertKind {
    pub const ALL: [AlertKind; 8] = [
        AlertKind::Volume,
        AlertKind::DnsTunnel,
        AlertKind::IcmpTunnel,
        AlertKind::MonitorLoss,
        AlertKind::SensitiveEgress,
        AlertKind::AuditMismatch,
        AlertKind::AuditOff,
        AlertKind::Baseline,
    ];

    /// The kind [`as_str`](Self::as_str) names.
    pub fn from_name(name: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The stable name used in JSON (`kind`), CSV and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Volume => "volume",
            AlertKind::DnsTunnel => "dns_tunnel",
            AlertKind::IcmpTunnel => "icmp_tunnel",
            AlertKind::MonitorLoss => "monitor_loss",
            AlertKind::SensitiveEgress => "sensitive_egress",
            AlertKind::AuditMismatch => "audit_mismatch",
            AlertKind::AuditOff => "audit_off",
            AlertKind::Baseline => "baseline",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Packet time of the packet that raised it.
    pub ts_us: i64,
    pub kind: AlertKind,
    pub severity: Severity,
    pub principal: Principal,
    /// `address:port/proto` or a domain.
    pub dst: Option<String>,
    pub bytes: u64,
    /// One line a person reads.
    pub summary: String,
    /// Detector-specific evidence.
    pub details: Value,
}
