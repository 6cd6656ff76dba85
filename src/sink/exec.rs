//! Sinks that run a program: an exec hook (the record as JSON on standard input) and email
//! through the local sendmail program (a plain-text message on standard input).
//!
//! No shell is involved: the program and its arguments are passed as they are configured. The
//! program inherits exfilmon's standard error (so its complaints reach the journal), gets
//! /dev/null as standard output, and is killed with its process group (whatever it started)
//! when it runs past the sink's timeout. Standard
//! input is written from a helper thread, so a program that never reads cannot stall us.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Deliver, Record};

/// Runs `program` with `args`, feeding `input`; Ok when it exits 0 within `timeout`.
fn run(program: &PathBuf, args: &[String], input: Vec<u8>, timeout: Duration, kind: &str) -> Result<(), String> {
    let name = program.display();
    let mut child = Command::new(program)
        .args(args)
        .env("EXFILMON_RECORD", kind)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // Its own process group, so a timeout ends whatever it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Ends with the program at the latest (a broken pipe).
        let _ = std::thread::Builder::new().name("exfilmon-sink-stdin".into()).spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{name} failed ({status})")),
            Ok(None) if Instant::now() >= deadline => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ =
                        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{name} did not finish within {} and was killed",
                    humantime::format_duration(timeout)
                ));
            }
            Ok(None) => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("cannot wait for {name}: {e}")),
        }
    }
}

pub(super) struct Exec {
    program: PathBuf,
    args: Vec<String>,
    timeout: Duration,
}

impl Exec {
    pub(super) fn new(program: PathBuf, args: Vec<String>, timeout: Duration) -> Exec {
        Exec { program, args, timeout }
    }
}

impl Deliver for Exec {
    fn deliver(&mut self, r: &Record) -> Result<(), String> {
        let mut input = r.json.to_string().into_bytes();
        input.push(b'\n');
        run(&self.program, &self.args, input, self.timeout, r.kind.as_str())
    }
}

pub(super) struct Email {
    sendmail: PathBuf,
    to: Vec<String>,
    from: Option<String>,
    /// This host's name (the config's `observer`), in every subject.
    observer: String,
    timeout: Duration,
}

impl Email {
    pub(super) fn new(
        sendmail: PathBuf,
        to: Vec<String>,
        from: Option<String>,
        observer: String,
        timeout: Duration,
    ) -> Email {
        Email { sendmail, to, from, observer, timeout }
    }

    /// The message: headers cannot be broken by what a summary holds (it is escaped to
    /// printable ASCII and cut to a subject's length).
    fn message(&self, r: &Record) -> String {
        let severity = r.severity.as_str();
        let kind = r.json.get("kind").and_then(|k| k.as_str()).unwrap_or(r.kind.as_str());
        let subject: String =
            crate::escape::printable(&format!("[exfilmon {}] {severity} {kind}: {}", self.observer, r.summary))
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control())
                .take(200)
                .collect();
        let mut m = String::new();
        if let Some(from) = &self.from {
            m.push_str(&format!("From: {from}\n"));
        }
        m.push_str(&format!(
            "To: {}\nSubject: {subject}\nDate: {}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\nAuto-Submitted: auto-generated\n\n",
            self.to.join(", "),
            chrono::Utc::now().to_rfc2822()
        ));
        m.push_str(&crate::escape::printable(&r.summary));
        m.push_str("\n\n");
        m.push_str(&serde_json::to_string_pretty(&r.json).unwrap_or_default());
        m.push('\n');
        m
    }
}

impl Deliver for Email {
    fn deliver(&mut self, r: &Record) -> Result<(), String> {
        // -oi: a line holding only "." does not end the message; `--`: addresses are not options.
        let mut args = vec!["-oi".to_string(), "--".to_string()];
        args.extend(self.to.iter().cloned());
        run(&self.sendmail, &args, self.message(r).into_bytes(), self.timeout, r.kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::alert::Severity;
    use crate::sink::RecordKind;

    #[test]
    fn subject_cannot_inject_headers() {
        let e = Email::new("/x".into(), vec!["a@b".into()], None, "box".into(), Duration::from_secs(1));
        let r = Record {
            kind: RecordKind::Alert,
            severity: Severity::High,
            summary: "evil\r\nBcc: x@y\u{1b}".into(),
            json: json!({"kind": "dns_tunnel"}),
        };
        let m = e.message(&r);
        let headers = m.split("\n\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc")), "{headers}");
        assert!(headers.contains("Subject: [exfilmon box] high dns_tunnel: evil\\x0d\\x0aBcc: x@y\\x1b"), "{headers}");
    }

    #[test]
    fn hanging_program_is_killed_at_the_timeout() {
        let started = Instant::now();
        let err =
            run(&"/bin/sleep".into(), &["30".into()], Vec::new(), Duration::from_millis(200), "alert").unwrap_err();
        assert!(err.contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let err = run(&"/bin/false".into(), &[], b"x".to_vec(), Duration::from_secs(5), "alert").unwrap_err();
        assert!(err.contains("failed"), "{err}");
        run(&"/bin/cat".into(), &[], vec![b'x'; 1 << 20], Duration::from_secs(5), "alert").unwrap();
    }
}
