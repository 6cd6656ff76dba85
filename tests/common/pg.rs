//! A real PostgreSQL server for a test (Debian's `postgresql` package): `initdb` into a
//! temporary directory as the `postgres` user, a private port on 127.0.0.1 with password
//! (SCRAM) logins, its unix socket in the same directory; stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{skip, Scratch};

/// The role tests log in as, and its password (which must never show anywhere).
pub const USER: &str = "exfil";
pub const PASSWORD: &str = "Pw-9f3Kq-never-shown";
pub const DATABASE: &str = "fleet";

pub struct Postgres {
    scratch: Scratch,
    bin: PathBuf,
    pub port: u16,
    running: bool,
    /// Server options beyond the port and socket (TLS).
    options: String,
}

/// The newest installed server's programs.
fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|d| d.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()).unwrap_or(0));
    dirs.pop()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
    c
}

fn checked(what: &str, o: Output) -> Output {
    assert!(o.status.success(), "{what}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    o
}

impl Postgres {
    /// A running server with role [`USER`] owning database [`DATABASE`]; `None` (skipped,
    /// a failure under CI=true) without root or the postgresql package.
    pub fn start() -> Option<Postgres> {
        if !nix::unistd::Uid::effective().is_root() {
            skip("PostgreSQL tests run the server as the postgres user: run as root");
            return None;
        }
        let Some(bin) = bin_dir() else {
            skip("PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let scratch = Scratch::new();
        checked("chown", Command::new("chown").args(["-R", "postgres:postgres"]).arg(scratch.root()).output().unwrap());
        let data = scratch.path("data");
        checked(
            "initdb",
            as_postgres(&bin.join("initdb"))
                .args(["--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres", "-E", "UTF8", "-D"])
                .arg(&data)
                .output()
                .unwrap(),
        );
        let mut pg = Postgres { scratch, bin, port: free_port(), running: false, options: String::new() };
        pg.start_again();
        pg.psql(&format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"));
        pg.psql(&format!("CREATE DATABASE {DATABASE} OWNER {USER}"));
        Some(pg)
    }

    /// `postgresql://exfil@127.0.0.1:PORT/fleet`: the password goes separately.
    pub fn url(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The same database over the unix socket in the test's directory (local logins need no
    /// password): reachable from a network namespace, which has its own loopback.
    pub fn socket_url(&self) -> String {
        let dir = self.scratch.root().to_string_lossy().replace('/', "%2F");
        format!("postgresql://{USER}@{dir}:{}/{DATABASE}", self.port)
    }

    /// A file holding the password, mode 0600, in the test's directory.
    pub fn password_file(&self) -> PathBuf {
        let path = self.scratch.path("pgpass");
        std::fs::write(&path, format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        path
    }

    /// Runs `sql` in the fleet database as the superuser over the socket; its output,
    /// unaligned, tuples only.
    pub fn query(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    fn psql_in(&self, db: &str, sql: &str) -> String {
        let o = as_postgres(&self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.scratch.root())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db, "-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&checked(sql, o).stdout).trim().to_owned()
    }

    /// One integer from `sql` in the fleet database.
    pub fn query_i64(&self, sql: &str) -> i64 {
        let text = self.query(sql);
        text.parse().unwrap_or_else(|_| panic!("{sql}: {text:?}"))
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        as_postgres(&self.bin.join("pg_ctl")).arg("-D").arg(self.scratch.path("data")).args(args).output().unwrap()
    }

    /// Stops the server (an outage); [`start_again`](Self::start_again) brings it back.
    pub fn stop(&mut self) {
        checked("pg_ctl stop", self.pg_ctl(&["-m", "fast", "-w", "stop"]));
        self.running = false;
    }

    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c log_statement=all -c log_connections=on {}",
            self.port,
            self.scratch.root().display(),
            self.options
        );
        let log = self.scratch.path("server.log");
        checked("pg_ctl start", self.pg_ctl(&["-w", "-l", &log.to_string_lossy(), "-o", &options, "start"]));
        self.running = true;
    }

    /// Restarts the server with TLS on: a certificate for 127.0.0.1 signed by a CA made for
    /// the test (openssl). Returns the CA's file, for the client's `SSL_CERT_FILE`.
    pub fn enable_tls(&mut self) -> PathBuf {
        let file = |f: &str| self.scratch.path(f).to_string_lossy().into_owned();
        let (ca, ca_key, key, csr, cert, ext) = (
            file("ca.pem"),
            file("ca.key"),
            file("server.key"),
            file("server.csr"),
            file("server.crt"),
            file("san.cnf"),
        );
        std::fs::write(&ext, "subjectAltName = IP:127.0.0.1\n").unwrap();
        let openssl = |args: &[&str]| checked("openssl", Command::new("openssl").args(args).output().unwrap());
        let new_key = ["-newkey", "rsa:2048", "-nodes"];
        openssl(
            &[
                &["req", "-x509", "-days", "2", "-subj", "/CN=exfilmon test CA"][..],
                &new_key,
                &["-keyout", &ca_key, "-out", &ca],
            ]
            .concat(),
        );
        openssl(&[&["req", "-subj", "/CN=127.0.0.1"][..], &new_key, &["-keyout", &key, "-out", &csr]].concat());
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
        checked("chown", Command::new("chown").args(["postgres:postgres"]).arg(&key).arg(&cert).output().unwrap());
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        self.options = format!("-c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}");
        self.stop();
        self.start_again();
        PathBuf::from(ca)
    }

    /// The server's log: every statement it ran (log_statement=all).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        }
    }
}
