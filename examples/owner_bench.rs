//! The owner-lookup benchmark's consumer (`benches/owner.sh`): reads an NFLOG group the way
//! `exfilmon run` does, asks [`Owners`] about the flow of every logged packet (the ruleset logs
//! one SYN per new connection) from the reader thread, collects the answers, and prints what
//! it counted: lookups done and missed by reason, their latency, and what asking cost the
//! reader.
//!
//! ```sh
//! ip netns exec NS target/debug/examples/owner_bench --group 9 --secs 13
//! ```
//!
//! Run it inside the namespace whose flows it looks up. It prints `ready` on stderr once the
//! group is bound, reads until SIGTERM (or `--secs`), collects the answers still under way
//! (at most 3 s more), and prints one `key value` line per figure on stdout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use exfilmon::decode::{self, Frame};
use exfilmon::source::nflog::{NflogConfig, NflogSource};
use exfilmon::source::owner::{FlowKey, Lookup, OwnerConfig, Owners, Why};
use exfilmon::source::FrameSink;

#[derive(Debug, Parser)]
#[command(about = "Look up the owner of every flow logged to an NFLOG group; print counts and latency")]
struct Args {
    /// NFLOG group the ruleset logs new flows to.
    #[arg(long, default_value_t = 9)]
    group: u16,
    /// Seconds to read at most (SIGTERM ends the reading earlier).
    #[arg(long, default_value_t = 600)]
    secs: u64,
    /// The process name expected to own the flows (the load generator); owners found with
    /// another name are counted apart.
    #[arg(long, default_value = "tcpconnect")]
    comm: String,
    /// Lookup queue size.
    #[arg(long, default_value_t = OwnerConfig::default().queue)]
    queue: usize,
}

/// Asks about each logged packet's flow, timing the asks.
struct Asker<'a> {
    owners: &'a mut Owners,
    packets: u64,
    undecodable: u64,
    ask_time: Duration,
    ask_max: Duration,
    immediate: u64,
}

impl FrameSink for Asker<'_> {
    fn frame(&mut self, frame: Frame<'_>) {
        self.packets += 1;
        let Ok(p) = decode::decode(&frame) else {
            self.undecodable += 1;
            return;
        };
        let start = Instant::now();
        // Every logged packet is a connection's SYN: a new flow (its 4-tuple may be reused).
        let answer = self.owners.ask_new(FlowKey::egress(p.proto, p.src, p.sport, p.dst, p.dport));
        let took = start.elapsed();
        self.ask_time += took;
        self.ask_max = self.ask_max.max(took);
        self.immediate += u64::from(answer.is_some());
    }

    fn damaged_record(&mut self) {
        self.undecodable += 1;
    }
}

/// CPU seconds (user + system) of this process's thread named `name`.
fn thread_cpu(name: &str) -> Option<f64> {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if std::fs::read_to_string(task.path().join("comm")).ok()?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
        let (u, s): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
        return Some((u + s) / ticks as f64);
    }
    None
}

fn main() -> Result<()> {
    let args = Args::parse();
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone()).context("SIGTERM handler")?;
    let cfg = NflogConfig { group: args.group, ..NflogConfig::default() };
    let mut source = NflogSource::open(&cfg).context("binding the NFLOG group")?;
    let mut owners = Owners::start(&OwnerConfig { queue: args.queue, ..OwnerConfig::default() })
        .context("starting the owner lookups")?;
    eprintln!("ready");
    let (mut found, mut other_comm, mut unknown) = (0u64, 0u64, 0u64);
    let mut count = |lookup: &Lookup| match lookup {
        Lookup::Found(o) if o.comm == args.comm => found += 1,
        Lookup::Found(_) => other_comm += 1,
        Lookup::Unknown(_) => unknown += 1,
    };
    let mut asker = Asker {
        owners: &mut owners,
        packets: 0,
        undecodable: 0,
        ask_time: Duration::ZERO,
        ask_max: Duration::ZERO,
        immediate: 0,
    };
    let end = Instant::now() + Duration::from_secs(args.secs);
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        source.poll(&mut asker).context("reading NFLOG")?;
        asker.owners.poll(|_, l| count(l));
    }
    let (packets, undecodable, ask_time, ask_max, immediate) =
        (asker.packets, asker.undecodable, asker.ask_time, asker.ask_max, asker.immediate);
    let drain_end = Instant::now() + Duration::from_secs(3);
    while owners.pending() > 0 && Instant::now() < drain_end {
        owners.poll_timeout(Duration::from_millis(100), |_, l| count(l));
    }
    let worker_cpu = thread_cpu("owner-lookup").unwrap_or(f64::NAN);
    let s = owners.stats();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let lines: Vec<(String, String)> = vec![
        ("nflog_packets".into(), packets.to_string()),
        ("nflog_lost".into(), source.stats.lost.to_string()),
        ("nflog_overruns".into(), source.stats.overruns.to_string()),
        ("undecodable".into(), undecodable.to_string()),
        ("asked".into(), s.asked.to_string()),
        ("answered_at_once".into(), immediate.to_string()),
        ("queued".into(), s.queued.to_string()),
        ("queue_full".into(), s.queue_full.to_string()),
        ("superseded".into(), s.superseded.to_string()),
        ("found".into(), s.found.to_string()),
        ("found_expected_comm".into(), found.to_string()),
        ("found_other_comm".into(), other_comm.to_string()),
        ("unknown".into(), s.unknown_total().to_string()),
        ("pending".into(), s.pending.to_string()),
        ("latency_min_ms".into(), format!("{:.3}", ms(s.latency.min()))),
        ("latency_median_ms".into(), format!("{:.3}", ms(s.latency.quantile(0.5)))),
        ("latency_p99_ms".into(), format!("{:.3}", ms(s.latency.quantile(0.99)))),
        ("latency_max_ms".into(), format!("{:.3}", ms(s.latency.max()))),
        ("ask_mean_ns".into(), (ask_time.as_nanos() / u128::from(s.asked.max(1))).to_string()),
        ("ask_max_us".into(), ask_max.as_micros().to_string()),
        ("worker_cpu_s".into(), format!("{worker_cpu:.2}")),
        ("full_scans".into(), s.worker.full_scans.to_string()),
        ("full_scan_ms_total".into(), (s.worker.full_scan_us / 1000).to_string()),
        ("pid_scans".into(), s.worker.pid_scans.to_string()),
        ("pid_scan_ms_total".into(), (s.worker.pid_scan_us / 1000).to_string()),
        ("index_hits".into(), s.worker.index_hits.to_string()),
        ("retries".into(), s.worker.retries.to_string()),
        ("process_reads".into(), s.worker.process_reads.to_string()),
    ];
    for (k, v) in lines {
        println!("{k} {v}");
    }
    for why in Why::ALL {
        if s.unknown(why) > 0 {
            println!("unknown_{} {}", why.name(), s.unknown(why));
        }
    }
    // `count` closure totals and the stats must agree: every answer was seen once.
    debug_assert_eq!(found + other_comm + unknown, s.found + s.unknown_total());
    Ok(())
}
