//! Syslog: to the local socket (/dev/log), or to a collector over UDP (RFC 5426, one message
//! per datagram) or TCP (RFC 6587 octet counting).
//!
//! To a collector, RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, where
//! MSGID is the record type (alert, event, checkpoint, heartbeat). To the local socket, the
//! form glibc's syslog(3) sends, `<PRI>Mmm dd hh:mm:ss APP-NAME[PID]: MSG`: on current systems
//! /dev/log is journald, which reads the program name and pid only from that form (RFC 5424
//! arrives there as one unparsed line); rsyslog's imuxsock parses it too. MSG is the record's
//! JSON object on one line (JSON escapes every control character, so a hostile name cannot
//! start a new line); its `type` field carries the record type.

use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use super::config::SyslogTarget;
use super::{Deliver, Record, RecordKind};
use crate::alert::Severity;

pub(super) struct Syslog {
    target: SyslogTarget,
    facility: u8,
    app_name: String,
    /// RFC 5424's HOSTNAME: the config's `observer`.
    hostname: String,
    timeout: Duration,
    tcp: Option<TcpStream>,
}

impl Syslog {
    pub(super) fn new(
        target: SyslogTarget,
        facility: u8,
        app_name: String,
        hostname: String,
        timeout: Duration,
    ) -> Self {
        Syslog { target, facility, app_name, hostname, timeout, tcp: None }
    }

    fn pri(&self, r: &Record) -> u32 {
        // Alerts are louder than the monitor's own events of the same severity.
        let severity = match (r.kind, r.severity) {
            (RecordKind::Alert, Severity::High) => 2,
            (RecordKind::Alert, Severity::Medium) => 4,
            (RecordKind::Alert, Severity::Low) => 5,
            (RecordKind::Event, Severity::High) => 3,
            (RecordKind::Event, Severity::Medium) => 4,
            _ => 6,
        };
        u32::from(self.facility) * 8 + severity
    }

    fn message(&self, r: &Record) -> String {
        if let SyslogTarget::Unix(_) = self.target {
            return format!(
                "<{}>{} {}[{}]: {}",
                self.pri(r),
                chrono::Local::now().format("%b %e %H:%M:%S"),
                self.app_name,
                std::process::id(),
                r.json
            );
        }
        format!(
            "<{}>1 {} {} {} {} {} - {}",
            self.pri(r),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            self.hostname,
            self.app_name,
            std::process::id(),
            r.kind.as_str(),
            r.json
        )
    }

    fn resolve(host_port: &str) -> Result<Vec<std::net::SocketAddr>, String> {
        let addrs: Vec<_> =
            host_port.to_socket_addrs().map_err(|e| format!("cannot resolve {host_port}: {e}"))?.collect();
        if addrs.is_empty() {
            return Err(format!("{host_port} resolves to no address"));
        }
        Ok(addrs)
    }
}

impl Deliver for Syslog {
    fn deliver(&mut self, r: &Record) -> Result<(), String> {
        let msg = self.message(r);
        match &self.target {
            SyslogTarget::Unix(path) => {
                let sock = UnixDatagram::unbound().map_err(|e| format!("cannot make a socket: {e}"))?;
                sock.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
                sock.send_to(msg.as_bytes(), path).map_err(|e| format!("cannot send to {}: {e}", path.display()))?;
            }
            SyslogTarget::Udp(hp) => {
                let addr = Self::resolve(hp)?[0];
                let local = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let sock = UdpSocket::bind(local).map_err(|e| format!("cannot make a socket: {e}"))?;
                sock.send_to(msg.as_bytes(), addr).map_err(|e| format!("cannot send to {hp}: {e}"))?;
            }
            SyslogTarget::Tcp(hp) => {
                if self.tcp.is_none() {
                    let mut last = String::new();
                    for addr in Self::resolve(hp)? {
                        match TcpStream::connect_timeout(&addr, self.timeout) {
                            Ok(s) => {
                                s.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
                                self.tcp = Some(s);
                                break;
                            }
                            Err(e) => last = format!("cannot connect to {hp}: {e}"),
                        }
                    }
                    if self.tcp.is_none() {
                        return Err(last);
                    }
                }
                let frame = format!("{} {msg}", msg.len());
                if let Some(s) = self.tcp.as_mut() {
                    if let Err(e) = s.write_all(frame.as_bytes()) {
                        self.tcp = None;
                        return Err(format!("cannot send to {hp}: {e}"));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rfc5424_header_and_one_line_message() {
        let s = Syslog::new(
            SyslogTarget::Udp("127.0.0.1:9".into()),
            10,
            "exfilmon".into(),
            "box".into(),
            Duration::from_secs(1),
        );
        let r = Record {
            kind: RecordKind::Alert,
            severity: Severity::High,
            summary: "x".into(),
            json: json!({"summary": "evil\nname\u{1b}[2J"}),
        };
        let m = s.message(&r);
        assert!(m.starts_with("<82>1 "), "{m}");
        let fields: Vec<&str> = m.splitn(8, ' ').collect();
        assert_eq!(&fields[2..7], ["box", "exfilmon", &std::process::id().to_string(), "alert", "-"]);
        assert!(!m.contains('\n') && !m.contains('\x1b'), "{m}");
    }

    /// The local socket gets what journald parses: `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`.
    #[test]
    fn local_socket_gets_the_syslog3_form() {
        let s = Syslog::new(
            SyslogTarget::Unix("/dev/log".into()),
            3,
            "exfilmon".into(),
            "box".into(),
            Duration::from_secs(1),
        );
        let r =
            Record { kind: RecordKind::Event, severity: Severity::Medium, summary: "x".into(), json: json!({"a": 1}) };
        let m = s.message(&r);
        assert!(m.starts_with("<28>"), "{m}");
        // "Nov 22 01:57:00 " is 16 bytes, day space-padded.
        assert_eq!(&m[4 + 15..4 + 16], " ", "{m}");
        assert!(m[4 + 16..].starts_with(&format!("exfilmon[{}]: {{\"a\":1}}", std::process::id())), "{m}");
    }
}
