//! The live monitor watching itself: its events for the trail, checkpoints, heartbeat lines to
//! syslog, and the loaded ruleset compared with the one the configuration renders.
//!
//! The ruleset is checked on a thread of its own (running `nft` takes milliseconds the packet
//! loop should not wait for) every `[monitor] ruleset_check`; only changes of state become
//! events (missing, changed, restored, cannot be checked), so a removed table is one event,
//! not one a minute. The comparison is line by line after dropping comments, blank lines and
//! counter values: `nft list table inet exfilmon` prints the ruleset in the form `exfilmon nft`
//! renders it. It sees rules added, removed, reordered or altered, set elements (an
//! allow-listed address added at run time) and chain hooks or policies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Value};

use crate::alert::Severity;
use crate::config::Config;
use crate::nft::{self, NftError};
use crate::sink::Dispatcher;
use crate::store::writer::{Write, Writer};
use crate::trail::{Event, EventKind};

pub struct SelfWatch {
    sinks: Option<Arc<Dispatcher>>,
    checkpoint_every: Option<Duration>,
    next_checkpoint: Instant,
    ruleset: Option<(Sender<String>, Receiver<Event>)>,
}

impl SelfWatch {
    /// Starts watching; `signing` says whether checkpoints are signed.
    pub fn start(config: &Config, sinks: Option<Arc<Dispatcher>>, signing: bool) -> SelfWatch {
        let every = config.trail.checkpoint_interval;
        SelfWatch {
            sinks,
            checkpoint_every: signing.then_some(every),
            next_checkpoint: Instant::now() + every,
            ruleset: spawn_ruleset_check(nft::render(config), config.monitor.ruleset_check),
        }
    }

    /// Once a second: the sinks' and the ruleset's events to the writer, a checkpoint when
    /// due, and a heartbeat line to syslog sinks whose interval has passed.
    pub fn tick(&mut self, writer: &mut Writer, status: impl FnOnce() -> Value) {
        if let Some(d) = &self.sinks {
            for e in d.take_notices() {
                writer.send(Write::Event(Box::new(e)));
            }
            d.heartbeat(status);
        }
        if let Some((_, events)) = &self.ruleset {
            for e in events.try_iter() {
                if e.severity == Severity::High {
                    tracing::warn!("{}", e.summary);
                } else {
                    tracing::info!("{}", e.summary);
                }
                writer.send(Write::Event(Box::new(e)));
            }
        }
        if let Some(every) = self.checkpoint_every {
            if Instant::now() >= self.next_checkpoint {
                self.next_checkpoint = Instant::now() + every;
                writer.send(Write::Checkpoint);
            }
        }
    }

    /// The configuration was reloaded: compare the ruleset with its new rendering.
    pub fn reloaded(&mut self, config: &Config) {
        if let Some((expected, _)) = &self.ruleset {
            let _ = expected.send(nft::render(config));
        }
    }

    /// Per-sink counters, for the health row.
    pub fn sink_stats(&self) -> Value {
        self.sinks.as_ref().map_or(Value::Null, |d| d.stats())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ruleset {
    Matches,
    Missing,
    Differs(String),
    Unchecked(String),
}

fn spawn_ruleset_check(expected: String, every: Duration) -> Option<(Sender<String>, Receiver<Event>)> {
    let (expected_tx, expected_rx) = crossbeam_channel::unbounded::<String>();
    let (events_tx, events_rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new().name("exfilmon-ruleset".into()).spawn(move || {
        let mut expected = expected;
        let mut last = Ruleset::Matches;
        let mut wait = Duration::ZERO;
        loop {
            match expected_rx.recv_timeout(wait) {
                Ok(new) => expected = new,
                Err(RecvTimeoutError::Timeout) => {}
                // The monitor is gone.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            wait = every;
            let now = check(&expected);
            if now != last {
                if let Some(e) = event(&now) {
                    if events_tx.send(e).is_err() {
                        return;
                    }
                }
                last = now;
            }
        }
    });
    thread.ok().map(|_| (expected_tx, events_rx))
}

fn event(state: &Ruleset) -> Option<Event> {
    let table = nft::TABLE;
    let (kind, severity, summary, details) = match state {
        Ruleset::Matches => (
            EventKind::RulesetRestored,
            Severity::Medium,
            format!("table {table} matches the configured ruleset again"),
            json!({}),
        ),
        Ruleset::Missing => (
            EventKind::RulesetMissing,
            Severity::High,
            format!("table {table} is not loaded: no egress is logged to the monitor (exfilmon nft --apply)"),
            json!({}),
        ),
        Ruleset::Differs(what) => (
            EventKind::RulesetChanged,
            Severity::High,
            format!("table {table} differs from the configured ruleset: {what}"),
            json!({ "difference": what }),
        ),
        Ruleset::Unchecked(why) => (
            EventKind::RulesetUnchecked,
            Severity::Medium,
            format!("cannot check table {table}: {why}"),
            json!({ "error": why }),
        ),
    };
    Some(Event::now(kind, severity, summary, details))
}

fn check(expected: &str) -> Ruleset {
    match nft::nft(&["list", "table", "inet", "exfilmon"], None) {
        Ok(live) => match difference(expected, &live) {
            None => Ruleset::Matches,
            Some(d) => Ruleset::Differs(d),
        },
        Err(NftError::Failed(m)) if m.contains("No such file") => Ruleset::Missing,
        Err(e) => Ruleset::Unchecked(e.to_string()),
    }
}

/// The first difference between the rendered ruleset and `nft list table` output.
pub fn difference(rendered: &str, listed: &str) -> Option<String> {
    // The rendering declares, deletes and re-creates the table; its definition is the last part.
    let definition = rendered.rfind("\ntable ").map_or(rendered, |i| &rendered[i..]);
    let want = normalise(definition);
    let have = normalise(listed);
    for (i, (w, h)) in want.iter().zip(&have).enumerate() {
        if w != h {
            return Some(format!("line {} is `{h}`, expected `{w}`", i + 1));
        }
    }
    match want.len().cmp(&have.len()) {
        std::cmp::Ordering::Less => Some(format!("extra line `{}`", have[want.len()])),
        std::cmp::Ordering::Greater => Some(format!("line `{}` is missing", want[have.len()])),
        std::cmp::Ordering::Equal => None,
    }
}

/// Lines without comments, blank lines, indentation, counter values or the elements of the
/// blocked sets (blocks come and go at run time; `report health` lists them).
fn normalise(text: &str) -> Vec<String> {
    let (mut in_blocked, mut in_elements) = (false, false);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            if l.starts_with("set blocked") {
                in_blocked = true;
            } else if *l == "}" {
                in_blocked = false;
            }
            if in_blocked && l.starts_with("elements = {") {
                in_elements = true;
            }
            let skip = in_elements;
            if in_elements && l.ends_with('}') {
                in_elements = false;
            }
            !skip
        })
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let mut out = Vec::with_capacity(words.len());
            let mut i = 0;
            while i < words.len() {
                out.push(words[i]);
                if words[i] == "counter" && words.get(i + 1) == Some(&"packets") && words.get(i + 3) == Some(&"bytes") {
                    i += 5;
                } else {
                    i += 1;
                }
            }
            crate::escape::printable(&out.join(" ")).into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nft list table inet exfilmon` printed (nft 1.0.6) for the shipped ruleset.
    const LISTED: &str = "table inet exfilmon {
	set allow_v4 {
		type ipv4_addr
		flags interval
	}

	set allow_v6 {
		type ipv6_addr
		flags interval
	}

	set blocked {
		typeof meta skuid
		flags timeout
	}

	set blocked_v4 {
		type ipv4_addr
		flags timeout
	}

	set blocked_v6 {
		type ipv6_addr
		flags timeout
	}

	chain egress {
		type filter hook output priority 100; policy accept;
		oif \"lo\" udp dport 53 counter packets 0 bytes 0 log prefix \"lcl\" group 7 accept comment \"exfilmon-local-dns-udp\"
		oif \"lo\" tcp dport 53 counter packets 0 bytes 0 log prefix \"lcl\" group 7 accept comment \"exfilmon-local-dns-tcp\"
		oif \"lo\" accept comment \"exfilmon-skip-lo\"
		meta skuid @blocked counter packets 3 bytes 180 drop comment \"exfilmon-blocked\"
		ip daddr @allow_v4 accept comment \"exfilmon-allow-v4\"
		ip6 daddr @allow_v6 accept comment \"exfilmon-allow-v6\"
		udp dport 53 counter packets 0 bytes 0 log prefix \"out\" group 7 accept comment \"exfilmon-dns-udp\"
		tcp dport 53 counter packets 12 bytes 900 log prefix \"out\" group 7 accept comment \"exfilmon-dns-tcp\"
		ct direction original meta l4proto { icmp, ipv6-icmp } counter packets 0 bytes 0 log prefix \"out\" group 7 snaplen 1500 queue-threshold 64 accept comment \"exfilmon-icmp\"
		ct direction original meta l4proto tcp @ih,0,16 0x1603 counter packets 0 bytes 0 log prefix \"out\" group 7 snaplen 2048 queue-threshold 64 accept comment \"exfilmon-tls-hello\"
		ct direction reply counter packets 0 bytes 0 log prefix \"srv\" group 7 snaplen 128 queue-threshold 64 accept comment \"exfilmon-served\"
		counter packets 0 bytes 0 log prefix \"out\" group 7 snaplen 128 queue-threshold 64 comment \"exfilmon-egress\"
	}

	chain forward {
		type filter hook forward priority 100; policy accept;
		ip saddr @blocked_v4 counter packets 0 bytes 0 drop comment \"exfilmon-fwd-blocked-v4\"
		ip6 saddr @blocked_v6 counter packets 0 bytes 0 drop comment \"exfilmon-fwd-blocked-v6\"
		ip daddr @allow_v4 accept comment \"exfilmon-fwd-allow-v4\"
		ip6 daddr @allow_v6 accept comment \"exfilmon-fwd-allow-v6\"
		udp dport 53 counter packets 0 bytes 0 log prefix \"out\" group 7 accept comment \"exfilmon-fwd-dns-udp\"
		tcp dport 53 counter packets 0 bytes 0 log prefix \"out\" group 7 accept comment \"exfilmon-fwd-dns-tcp\"
		ct direction original meta l4proto { icmp, ipv6-icmp } counter packets 0 bytes 0 log prefix \"out\" group 7 snaplen 1500 queue-threshold 64 accept comment \"exfilmon-fwd-icmp\"
		ct direction original meta l4proto tcp @ih,0,16 0x1603 counter packets 0 bytes 0 log prefix \"out\" group 7 snaplen 2048 queue-threshold 64 accept comment \"exfilmon-fwd-tls-hello\"
		ct direction reply counter packets 0 bytes 0 log prefix \"srv\" group 7 snaplen 128 queue-threshold 64 accept comment \"exfilmon-fwd-served\"
		counter packets 0 bytes 0 log prefix \"out\" group 7 snaplen 128 queue-threshold 64 comment \"exfilmon-fwd\"
	}

	chain answers {
		type filter hook input priority 100; policy accept;
		iif \"lo\" accept comment \"exfilmon-answers-skip-lo\"
		udp sport 53 counter packets 0 bytes 0 log prefix \"ans\" group 7 queue-threshold 64 comment \"exfilmon-answers\"
	}
}
";

    #[test]
    fn listed_ruleset_matches_its_rendering_and_edits_show() {
        let rendered = nft::render(&Config::default());
        assert_eq!(difference(&rendered, LISTED), None);
        let allowed = LISTED.replacen("flags interval\n", "flags interval\n\t\telements = { 203.0.113.9 }\n", 1);
        let d = difference(&rendered, &allowed).unwrap();
        assert!(d.contains("elements = { 203.0.113.9 }"), "{d}");
        let skipped = LISTED.replace("\t\toif \"lo\"", "\t\tmeta skuid 1001 accept\n\t\toif \"lo\"");
        assert!(difference(&rendered, &skipped).unwrap().contains("meta skuid 1001"));
        let gone = LISTED.replace(
            "\t\tcounter packets 0 bytes 0 log prefix \"out\" group 7 snaplen 128 queue-threshold 64 comment \"exfilmon-egress\"\n",
            "",
        );
        assert!(difference(&rendered, &gone).is_some());
    }

    /// Issue 17: blocks set at run time (one line or wrapped over several) are not a change;
    /// an element in another set still is.
    #[test]
    fn blocked_elements_are_not_a_difference() {
        let rendered = nft::render(&Config::default());
        let one = LISTED.replacen(
            "typeof meta skuid\n\t\tflags timeout\n",
            "typeof meta skuid\n\t\tflags timeout\n\t\telements = { 1001 timeout 1h expires 59m58s }\n",
            1,
        );
        assert_eq!(difference(&rendered, &one), None);
        let wrapped = LISTED.replacen(
            "type ipv4_addr\n\t\tflags timeout\n",
            "type ipv4_addr\n\t\tflags timeout\n\t\telements = { 192.0.2.1 timeout 1h expires 5m,\n\t\t\t     192.0.2.2 timeout 1h expires 6m }\n",
            1,
        );
        assert_eq!(difference(&rendered, &wrapped), None);
        let dropped = LISTED
            .replace("\t\tmeta skuid @blocked counter packets 3 bytes 180 drop comment \"exfilmon-blocked\"\n", "");
        assert!(difference(&rendered, &dropped).is_some(), "the block rule removed is a change");
    }
}
