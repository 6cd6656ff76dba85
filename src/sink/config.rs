//! `[[sink]]` tables: typed, checked as they are parsed (so errors carry the table's line).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::alert::Severity;
use crate::units::parse_duration;

/// What a sink is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Alert,
    Event,
    Checkpoint,
    /// "Still running" lines, to syslog sinks with `heartbeat` set; never configured by name.
    #[serde(skip)]
    Heartbeat,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Alert => "alert",
            RecordKind::Event => "event",
            RecordKind::Checkpoint => "checkpoint",
            RecordKind::Heartbeat => "heartbeat",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SyslogTarget {
    /// A local datagram socket, normally /dev/log.
    Unix(PathBuf),
    /// `host:port` of a collector (RFC 5426).
    Udp(String),
    /// `host:port` of a collector, octet-counted frames (RFC 6587).
    Tcp(String),
}

/// The shape of a jsonl sink's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsonlFormat {
    /// exfilmon's own records (src/sink/record.rs), as every other sink sends them.
    #[default]
    Native,
    /// Elastic Common Schema documents (src/sink/ecs.rs).
    Ecs,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    Jsonl {
        path: PathBuf,
        format: JsonlFormat,
    },
    Syslog {
        target: SyslogTarget,
        facility: u8,
        app_name: String,
        heartbeat: Option<Duration>,
    },
    Exec {
        program: PathBuf,
        args: Vec<String>,
    },
    Email {
        sendmail: PathBuf,
        to: Vec<String>,
        from: Option<String>,
    },
    /// The fleet store (`src/ship`): not a queue of records but a reader of the local
    /// database, which is its spool. The password is never in `url`: it comes from
    /// `password_file`, else `$PGPASSWORD`. `retain`: day partitions older are dropped.
    Postgres {
        url: String,
        password_file: Option<PathBuf>,
        retain: Option<Duration>,
    },
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSink")]
pub struct SinkConfig {
    /// Names the sink in events and counters.
    pub name: String,
    pub kind: SinkKind,
    /// Alerts and events below this severity are not sent (checkpoints always are).
    pub min_severity: Severity,
    pub records: Vec<RecordKind>,
    /// Records waiting for this sink at most; more are dropped and counted.
    pub queue: usize,
    /// Attempts after the first before a record is dropped (counted).
    pub retries: u32,
    /// Wait before the first retry; doubles each time, up to a minute.
    pub backoff: Duration,
    /// Longest one delivery may take (exec, email, a TCP connection).
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    path: Option<PathBuf>,
    format: Option<String>,
    address: Option<String>,
    facility: Option<String>,
    app_name: Option<String>,
    heartbeat: Option<String>,
    program: Option<PathBuf>,
    args: Option<Vec<String>>,
    sendmail: Option<PathBuf>,
    to: Option<Vec<String>>,
    from: Option<String>,
    url: Option<String>,
    password_file: Option<PathBuf>,
    retain: Option<String>,
    min_severity: Option<Severity>,
    records: Option<Vec<RecordKind>>,
    queue: Option<usize>,
    retries: Option<u32>,
    backoff: Option<String>,
    timeout: Option<String>,
}

const FACILITIES: &[(&str, u8)] = &[
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("authpriv", 10),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

fn duration(key: &str, v: Option<String>, default: Duration) -> Result<Duration, String> {
    v.map_or(Ok(default), |s| parse_duration(&s).map_err(|e| format!("{key}: {e}")))
}

/// A mail address sendmail takes as an argument: no spaces, controls or leading dash.
fn address_ok(a: &str) -> bool {
    !a.starts_with('-')
        && a.contains('@')
        && a.len() <= 254
        && a.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>' && b != b',')
}

fn host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

/// A PostgreSQL URL without a password: the sink's name is the URL, and names reach events,
/// logs and `report health`.
fn postgres_url_ok(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err("url must start with postgresql:// (postgresql://USER@HOST:PORT/DATABASE)".into());
    }
    let config: postgres::Config = url.parse().map_err(|e| format!("url: {e}"))?;
    if config.get_password().is_some() {
        return Err("url must not hold the password (it would show in logs and reports): put it in \
                    `password_file` (mode 0600) or $PGPASSWORD"
            .into());
    }
    Ok(())
}

impl TryFrom<RawSink> for SinkConfig {
    type Error = String;

    fn try_from(r: RawSink) -> Result<SinkConfig, String> {
        let kind_name = r.kind.as_str();
        // Keys that belong to another type are mistakes, as unknown keys are.
        let allowed: &[&str] = match kind_name {
            "jsonl" => &["path", "format"],
            "syslog" => &["address", "facility", "app_name", "heartbeat"],
            "exec" => &["program", "args"],
            "email" => &["sendmail", "to", "from"],
            "postgres" => &["url", "password_file", "retain"],
            other => return Err(format!("sink type {other:?} is not one of jsonl, syslog, exec, email, postgres")),
        };
        let given = [
            ("path", r.path.is_some()),
            ("format", r.format.is_some()),
            ("address", r.address.is_some()),
            ("facility", r.facility.is_some()),
            ("app_name", r.app_name.is_some()),
            ("heartbeat", r.heartbeat.is_some()),
            ("program", r.program.is_some()),
            ("args", r.args.is_some()),
            ("sendmail", r.sendmail.is_some()),
            ("to", r.to.is_some()),
            ("from", r.from.is_some()),
            ("url", r.url.is_some()),
            ("password_file", r.password_file.is_some()),
            ("retain", r.retain.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            return Err(format!("`{key}` does not apply to a {kind_name} sink (it takes {})", allowed.join(", ")));
        }
        let (kind, default_name, default_records): (SinkKind, String, &[RecordKind]) = match kind_name {
            "jsonl" => {
                let path = r.path.ok_or("a jsonl sink needs `path`, the file to append to")?;
                let format = match r.format.as_deref() {
                    None | Some("native") => JsonlFormat::Native,
                    Some("ecs") => JsonlFormat::Ecs,
                    Some(other) => {
                        return Err(format!(
                            "jsonl format {:?} is not one of native (exfilmon's records), ecs (Elastic Common Schema)",
                            crate::escape::printable(other)
                        ))
                    }
                };
                let name = format!("jsonl:{}", path.display());
                (
                    SinkKind::Jsonl { path, format },
                    name,
                    &[RecordKind::Alert, RecordKind::Event, RecordKind::Checkpoint],
                )
            }
            "syslog" => {
                let address = r.address.unwrap_or_else(|| "unix:/dev/log".into());
                let target = match address.split_once(':') {
                    Some(("unix", p)) if p.starts_with('/') => SyslogTarget::Unix(PathBuf::from(p)),
                    Some(("udp", hp)) if host_port(hp) => SyslogTarget::Udp(hp.to_owned()),
                    Some(("tcp", hp)) if host_port(hp) => SyslogTarget::Tcp(hp.to_owned()),
                    _ => {
                        return Err(format!(
                            "syslog address {address:?}: use unix:/dev/log, udp:HOST:PORT or tcp:HOST:PORT"
                        ))
                    }
                };
                let facility_name = r.facility.unwrap_or_else(|| "authpriv".into());
                let facility = FACILITIES.iter().find(|(n, _)| *n == facility_name).map(|(_, f)| *f).ok_or_else(|| {
                    format!("syslog facility {facility_name:?} is not one of user, daemon, auth, authpriv, local0 .. local7")
                })?;
                let app_name = r.app_name.unwrap_or_else(|| "exfilmon".into());
                if app_name.is_empty() || app_name.len() > 48 || !app_name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err("app_name: 1 to 48 printable ASCII characters without spaces (RFC 5424)".into());
                }
                let heartbeat = match r.heartbeat {
                    Some(s) => {
                        Some(parse_duration(&s).map_err(|e| format!("heartbeat: {e}"))?).filter(|d| !d.is_zero())
                    }
                    None => None,
                };
                (
                    SinkKind::Syslog { target, facility, app_name, heartbeat },
                    format!("syslog:{address}"),
                    &[RecordKind::Alert, RecordKind::Event, RecordKind::Checkpoint],
                )
            }
            "exec" => {
                let program = r.program.ok_or("an exec sink needs `program` (an absolute path; no shell is used)")?;
                if !program.is_absolute() {
                    return Err(format!("program {:?} must be an absolute path", program.display().to_string()));
                }
                let name = format!("exec:{}", program.display());
                (
                    SinkKind::Exec { program, args: r.args.unwrap_or_default() },
                    name,
                    &[RecordKind::Alert, RecordKind::Event],
                )
            }
            "postgres" => {
                let url =
                    r.url.ok_or("a postgres sink needs `url`, e.g. \"postgresql://exfilmon@db.example.org/fleet\"")?;
                postgres_url_ok(&url)?;
                let retain = r.retain.map(|s| parse_duration(&s).map_err(|e| format!("retain: {e}"))).transpose()?;
                let name = format!("postgres:{url}");
                let kind = SinkKind::Postgres { url, password_file: r.password_file, retain };
                (kind, name, &[RecordKind::Alert, RecordKind::Event, RecordKind::Checkpoint])
            }
            _ => {
                let to = r.to.filter(|t| !t.is_empty()).ok_or("an email sink needs `to`, a list of addresses")?;
                if let Some(bad) = to.iter().chain(r.from.as_ref()).find(|a| !address_ok(a)) {
                    return Err(format!(
                        "{:?} is not a mail address (user@host, no spaces)",
                        crate::escape::printable(bad)
                    ));
                }
                let sendmail = r.sendmail.unwrap_or_else(|| PathBuf::from("/usr/sbin/sendmail"));
                let name = format!("email:{}", to.join(","));
                (SinkKind::Email { sendmail, to, from: r.from }, name, &[RecordKind::Alert])
            }
        };
        let queue = r.queue.unwrap_or(10_000);
        if queue == 0 {
            return Err("queue must be at least 1".into());
        }
        Ok(SinkConfig {
            name: r.name.unwrap_or(default_name),
            kind,
            min_severity: r.min_severity.unwrap_or(Severity::Low),
            records: r.records.unwrap_or_else(|| default_records.to_vec()),
            queue,
            retries: r.retries.unwrap_or(5),
            backoff: duration("backoff", r.backoff, Duration::from_secs(1))?,
            timeout: duration("timeout", r.timeout, Duration::from_secs(10))?.max(Duration::from_millis(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SinkConfig, String> {
        #[derive(Deserialize)]
        struct One {
            sink: SinkConfig,
        }
        toml::from_str::<One>(text).map(|o| o.sink).map_err(|e| e.to_string())
    }

    #[test]
    fn each_type_with_defaults() {
        let s = parse("[sink]\ntype = \"syslog\"\naddress = \"udp:127.0.0.1:5514\"\nheartbeat = \"1m\"\n").unwrap();
        assert_eq!(
            s.kind,
            SinkKind::Syslog {
                target: SyslogTarget::Udp("127.0.0.1:5514".into()),
                facility: 10,
                app_name: "exfilmon".into(),
                heartbeat: Some(Duration::from_secs(60))
            }
        );
        assert_eq!((s.retries, s.queue, s.name.as_str()), (5, 10_000, "syslog:udp:127.0.0.1:5514"));
        let s = parse("[sink]\ntype = \"email\"\nto = [\"soc@example.org\"]\n").unwrap();
        assert_eq!(s.records, [RecordKind::Alert]);
        let s = parse("[sink]\ntype = \"exec\"\nprogram = \"/bin/true\"\nargs = [\"-x\"]\ntimeout = \"2s\"\n").unwrap();
        assert_eq!(s.timeout, Duration::from_secs(2));
        let s = parse("[sink]\ntype = \"jsonl\"\npath = \"/x\"\n").unwrap();
        assert_eq!(s.kind, SinkKind::Jsonl { path: "/x".into(), format: JsonlFormat::Native });
        let s = parse("[sink]\ntype = \"jsonl\"\npath = \"/x\"\nformat = \"ecs\"\n").unwrap();
        assert_eq!(s.kind, SinkKind::Jsonl { path: "/x".into(), format: JsonlFormat::Ecs });
    }

    /// The commented-out examples in exfilmon.example.toml are valid sinks.
    #[test]
    fn example_config_sinks_parse() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/exfilmon.example.toml")).unwrap();
        let mut toml_text = String::new();
        let mut inside = false;
        for line in text.lines() {
            if line == "# [[sink]]" {
                inside = true;
            } else if inside && !line.starts_with("# ") {
                inside = false;
            }
            if inside {
                toml_text.push_str(&line[2..]);
                toml_text.push('\n');
            }
        }
        #[derive(Deserialize)]
        struct Sinks {
            sink: Vec<SinkConfig>,
        }
        let sinks = toml::from_str::<Sinks>(&toml_text).unwrap().sink;
        let types: Vec<&str> = sinks.iter().map(|s| s.name.split(':').next().unwrap()).collect();
        assert_eq!(types, ["jsonl", "syslog", "exec", "email", "postgres"], "{toml_text}");
    }

    #[test]
    fn mistakes_are_named() {
        let err = parse("[sink]\ntype = \"exec\"\nprogram = \"hook.sh\"\n").unwrap_err();
        assert!(err.contains("absolute"), "{err}");
        let err = parse("[sink]\ntype = \"jsonl\"\npath = \"/x\"\nprogram = \"/bin/true\"\n").unwrap_err();
        assert!(err.contains("`program` does not apply to a jsonl sink"), "{err}");
        let err = parse("[sink]\ntype = \"email\"\nto = [\"-oQ/tmp evil@x\"]\n").unwrap_err();
        assert!(err.contains("not a mail address"), "{err}");
        let err = parse("[sink]\ntype = \"syslog\"\naddress = \"udp:nowhere\"\n").unwrap_err();
        assert!(err.contains("udp:HOST:PORT"), "{err}");
        let err = parse("[sink]\ntype = \"jsonl\"\npath = \"/x\"\nformat = \"gelf\"\n").unwrap_err();
        assert!(err.contains("not one of native (exfilmon's records), ecs"), "{err}");
        let err = parse("[sink]\ntype = \"syslog\"\nformat = \"ecs\"\n").unwrap_err();
        assert!(err.contains("`format` does not apply to a syslog sink"), "{err}");
        let err = parse("[sink]\ntype = \"pager\"\n").unwrap_err();
        assert!(err.contains("not one of"), "{err}");
    }
}
