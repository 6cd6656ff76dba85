//! Who sent a packet, beyond what the packet says.
//!
//! NFLOG stamps a packet with the uid of its socket's file, and a socket without a file has
//! none: a program that sends and closes at once (`sendall(); close()`) leaves its data in the
//! socket's queue, and the kernel sends it after the close with no uid; so do FIN, RST and
//! TIME_WAIT packets. Without help those bytes count for the source address, and a transfer
//! split across close() calls slips under a threshold. So each TCP/UDP flow's principal is
//! remembered from its packets that carry a uid, and a packet of a known flow that carries
//! none counts for it, in every detector and report alike. Live and replay do the same (a
//! replay within its captures).
//!
//! Live, the process behind each new flow is looked up off the packet path ([`Lookups`],
//! `source::owner`): a flow opened inside a login session is the login user's, so an sshd
//! session's traffic (whose socket is root's) counts for the user who logged in, and alerts
//! name the program. Until the answer arrives the flow counts for its socket's uid; an answer
//! that names no process is counted by its reason and changes nothing.
//!
//! Live, each flow also keeps its packets of the current and the previous minute until they
//! are handed out as program rows ([`Attribution::drain_programs`]): at once when its answer
//! is settled, after [`HOLD_US`] when it may still change. An answer that changes the flow's
//! principal (sshd's session: the login uid appears about a second after the fork) moves
//! what is held from the old principal to the new ([`Attribution::take_moves`]), so a pull
//! that ends before the lookup sees the login still counts for the user. Such a flow is asked
//! again `RECHECK_US` after its last ask, and as its bytes pass 64 KiB and each fourfold:
//! NFLOG hands packets over in batches, so a pull's bytes can all arrive at once. With an
//! audit log, the kernel's `LOGIN` record ([`Attribution::login`]) names the user of a session
//! that ended before any lookup saw its login uid; an answer without a login uid after one
//! with it (a holder seen after the session ended) changes nothing. A replay keeps
//! none of this (no lookups): its packet path is unchanged.
//!
//! Memory is bounded: live, at most [`MAX_FLOWS`] flows, each forgotten [`IDLE_US`] after its
//! last packet; when the table is full the idle half is evicted early and counted, so a flood of
//! new flows cannot grow it. A replay needs only each flow's uid, and needs it at millions of
//! packets a second: [`memory::FlowMemory`], a fixed table with one memory access per packet.

mod memory;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::decode::{Direction, Packet, PROTO_TCP, PROTO_UDP};
use crate::principal::{Dst, Principal};
use crate::rows::{EgressRow, Program, ProgramRow, Recredit, MINUTE_US};
use crate::source::owner::{FlowKey, Lookup, Owner, Owners, Why};
use crate::units::counters;

/// Where the owners of flows are asked: the live lookups; a replay has none.
pub trait Lookups: Send {
    /// A flow just started: look it up afresh; `Some` when answered at once.
    fn ask_new(&mut self, key: FlowKey) -> Option<Lookup>;
    /// A flow whose answer may have changed: look it up again.
    fn ask_again(&mut self, key: FlowKey) -> Option<Lookup>;
    /// Answers that arrived since the last call.
    fn poll(&mut self, f: &mut dyn FnMut(&FlowKey, &Lookup));
}

impl Lookups for Owners {
    fn ask_new(&mut self, key: FlowKey) -> Option<Lookup> {
        Owners::ask_new(self, key)
    }

    fn ask_again(&mut self, key: FlowKey) -> Option<Lookup> {
        Owners::ask_again(self, key)
    }

    fn poll(&mut self, f: &mut dyn FnMut(&FlowKey, &Lookup)) {
        Owners::poll(self, |k, l| f(k, l));
    }
}

/// A provisional answer (no login uid yet: sshd before the user authenticated) is looked up
/// afresh this long after, so a session's bulk after the login is the user's.
const RECHECK_US: i64 = 50_000;

/// An unsettled flow is also asked again as its bytes pass 64 KiB, then each time they have
/// grown fourfold (at most every [`BULK_RECHECK_US`]): a pull over ssh can start and end within
/// [`RECHECK_US`] of the login, and a few more lookups per flow cost little.
const FIRST_BULK: u64 = 64 << 10;
const BULK_RECHECK_US: i64 = 1_000;

/// Logins the audit trail reported are kept this long, and at most [`MAX_LOGINS`] of them.
const LOGIN_KEEP_US: i64 = 60_000_000;
const MAX_LOGINS: usize = 1024;

/// A live flow whose answer may still change holds its packets this long (packet time) before
/// they are handed out as program rows under its principal of then.
pub const HOLD_US: i64 = 10_000_000;

/// Flows remembered at most (about 120 bytes each with its key: 16 MB).
pub const MAX_FLOWS: usize = 1 << 17;
/// A flow is forgotten this long after its last packet: longer than TIME_WAIT (60 s) and the
/// longest a closed socket's queue takes to drain to a slow reader in practice.
pub const IDLE_US: i64 = 300_000_000;

/// (protocol, source, source port, destination, destination port).
type Key = (u8, IpAddr, u16, IpAddr, u16);

counters! {
    pub struct AttributeCounters {
        /// Packets without a uid counted for their flow's principal.
        orphans => "attribution_orphans",
        /// Flows forgotten early because the table was full.
        evicted => "attribution_flows_evicted",
        /// Flows whose process was found.
        owners_found => "owner_found",
        /// Of those, charged to a login user other than the socket's uid.
        owners_login => "owner_login_user",
        /// Bytes moved to another principal when a later answer changed a flow's.
        recredited => "attribution_recredited_bytes",
    }
}

struct Flow {
    who: Principal,
    last_us: i64,
    owner: Option<Arc<Owner>>,
    /// Why the last answer named no process.
    why: Option<Why>,
    /// The answer may still change (or none came yet): ask again after [`RECHECK_US`].
    settled: bool,
    asked_us: i64,
    /// Bytes sent, and the count at which an unsettled flow is asked again ([`FIRST_BULK`]).
    sent: u64,
    next_bulk: u64,
    /// Live only: packets not yet handed out as program rows.
    held: Option<Box<Held>>,
}

/// A live flow's packets of its two newest minutes not yet handed out, newest first.
#[derive(Default)]
struct Held {
    gid: Option<u32>,
    direction: Direction,
    minutes: [Count; 2],
}

#[derive(Default, Clone, Copy)]
struct Count {
    minute_us: i64,
    packets: u64,
    bytes: u64,
    first_us: i64,
    last_us: i64,
}

impl Held {
    /// Counts an egress packet; a minute pushed out of the two is returned, to hand out.
    fn add(&mut self, p: &Packet<'_>) -> Option<Count> {
        self.gid = p.gid.or(self.gid);
        self.direction = self.direction.max(p.direction);
        let minute_us = p.ts_us.div_euclid(MINUTE_US) * MINUTE_US;
        let mut out = None;
        if self.minutes[0].packets > 0 && minute_us > self.minutes[0].minute_us {
            out = Some(self.minutes[1]).filter(|c| c.packets > 0);
            self.minutes = [Count::default(), self.minutes[0]];
        }
        let now = &mut self.minutes[0];
        if now.packets == 0 {
            *now = Count { minute_us, first_us: p.ts_us, last_us: p.ts_us, ..Count::default() };
        }
        // A packet older than the newest minute (capture reordering) counts in it.
        now.packets += 1;
        now.bytes += u64::from(p.wire_len);
        now.first_us = now.first_us.min(p.ts_us);
        now.last_us = now.last_us.max(p.ts_us);
        out
    }
}

impl Flow {
    fn program(&self) -> Program {
        match (&self.owner, self.why) {
            (Some(o), _) => Program::Found {
                exe: o.exe.as_str().into(),
                comm: o.comm.as_str().into(),
                uid: o.uid,
                login_uid: o.login_uid,
            },
            (None, Some(why)) => Program::Unknown(why.name()),
            (None, None) => Program::Unknown("unanswered"),
        }
    }

    /// Counts a live egress packet; a minute pushed out is handed out to `programs`.
    fn hold(&mut self, key: Key, p: &Packet<'_>, programs: &mut Vec<ProgramRow>) {
        let Some(held) = &mut self.held else { return };
        if !p.direction.is_egress() {
            return;
        }
        if let Some(c) = held.add(p) {
            programs.push(self.program_row(key, c));
        }
    }

    fn program_row(&self, key: Key, c: Count) -> ProgramRow {
        ProgramRow {
            principal: self.who,
            dst: dst(key),
            minute_us: c.minute_us,
            program: self.program(),
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

#[derive(Default)]
pub struct Attribution {
    /// Live: each flow with its owner.
    flows: FxHashMap<Key, Flow>,
    /// Replay: each flow's uid.
    memory: memory::FlowMemory,
    lookups: Option<Box<dyn Lookups>>,
    pub counters: AttributeCounters,
    /// Lookups that named no process, by reason.
    pub unknown: BTreeMap<&'static str, u64>,
    /// Program rows handed out, waiting for [`drain_programs`](Self::drain_programs).
    programs: Vec<ProgramRow>,
    /// Held bytes a changed answer moved, with the flow's process.
    moves: Vec<(Recredit, Option<Arc<Owner>>)>,
    /// Live, with an audit log: recent logins (time, pid, login uid), oldest first.
    logins: VecDeque<(i64, u32, u32)>,
}

impl Attribution {
    /// Live: ask `lookups` who is behind each new flow.
    pub fn with_lookups(lookups: Box<dyn Lookups>) -> Attribution {
        Attribution { lookups: Some(lookups), ..Attribution::default() }
    }

    /// The packet's principal: its flow's login user when known, else its uid, else its flow's,
    /// else its source address; and the flow's process when known.
    pub fn principal(&mut self, p: &Packet<'_>) -> (Principal, Option<Arc<Owner>>) {
        let key = (p.sport != 0 && matches!(p.proto, PROTO_TCP | PROTO_UDP))
            .then_some((p.proto, p.src, p.sport, p.dst, p.dport));
        if let (Some(key), None) = (key, &self.lookups) {
            return (self.replayed(&key, p), None);
        }
        match (p.uid, key) {
            (Some(uid), Some(key)) => self.remember(key, Principal::Uid(uid), p),
            (Some(uid), None) => (Principal::Uid(uid), None),
            (None, Some(key)) => match self.flows.get_mut(&key) {
                Some(f) if p.ts_us.saturating_sub(f.last_us) <= IDLE_US => {
                    f.last_us = f.last_us.max(p.ts_us);
                    self.counters.orphans += 1;
                    f.hold(key, p, &mut self.programs);
                    (f.who, f.owner.clone())
                }
                _ => (Principal::Host(p.src), None),
            },
            (None, None) => (Principal::Host(p.src), None),
        }
    }

    /// Has the memory the packet's flow lives in fetched into the CPU's cache (replay only:
    /// live, the flows are few and the packets come one at a time).
    pub fn prefetch(&self, p: &Packet<'_>) {
        if self.lookups.is_none() && p.sport != 0 && matches!(p.proto, PROTO_TCP | PROTO_UDP) {
            self.memory.prefetch(self.memory.place(&(p.proto, p.src, p.sport, p.dst, p.dport)));
        }
    }

    /// A replay's flow memory: a uid-stamped packet is its uid's, a uid-less one its flow's.
    fn replayed(&mut self, key: &Key, p: &Packet<'_>) -> Principal {
        let at = self.memory.place(key);
        match p.uid {
            Some(uid) => {
                self.counters.evicted += u64::from(self.memory.put(at, uid, p.ts_us));
                Principal::Uid(uid)
            }
            None => match self.memory.get(at, p.ts_us) {
                Some(uid) => {
                    self.counters.orphans += 1;
                    Principal::Uid(uid)
                }
                None => Principal::Host(p.src),
            },
        }
    }

    fn remember(&mut self, key: Key, socket: Principal, p: &Packet<'_>) -> (Principal, Option<Arc<Owner>>) {
        let ts_us = p.ts_us;
        // One lookup for a known, settled flow: the path nearly every packet takes. `ask`:
        // whether to look the flow up, and whether as a new connection.
        let ask = match self.flows.get_mut(&key) {
            Some(f) => {
                f.last_us = f.last_us.max(ts_us);
                f.sent += u64::from(p.wire_len);
                let bulk = f.sent >= f.next_bulk && ts_us - f.asked_us >= BULK_RECHECK_US;
                if f.settled || (ts_us - f.asked_us < RECHECK_US && !bulk) {
                    f.hold(key, p, &mut self.programs);
                    return (f.who, f.owner.clone());
                }
                if bulk {
                    f.next_bulk = f.sent.saturating_mul(4);
                }
                f.asked_us = ts_us;
                Some(false)
            }
            None => {
                if self.flows.len() >= MAX_FLOWS {
                    self.make_room(ts_us);
                }
                let settled = self.lookups.is_none();
                let flow = Flow {
                    who: socket,
                    last_us: ts_us,
                    owner: None,
                    why: None,
                    settled,
                    asked_us: ts_us,
                    sent: u64::from(p.wire_len),
                    next_bulk: FIRST_BULK,
                    held: (!settled).then(Box::default),
                };
                self.flows.insert(key, flow);
                (!settled).then_some(true)
            }
        };
        // A new flow, or one whose answer may have changed: asked afresh (live only).
        if let Some(new) = ask {
            let asked = self.lookups.as_mut().and_then(|l| match new {
                true => l.ask_new(flow_key(key)),
                false => l.ask_again(flow_key(key)),
            });
            if let Some(answer) = asked {
                self.learn(key, &answer);
            }
        }
        // Held only now, under the principal an answer given at once may have changed.
        match self.flows.get_mut(&key) {
            Some(f) => {
                f.hold(key, p, &mut self.programs);
                (f.who, f.owner.clone())
            }
            None => (socket, None),
        }
    }

    /// The audit trail saw `pid` get login uid `auid` (pam_loginuid at an sshd login): a flow
    /// whose process is that one, or its pre-auth child, and that has no login uid yet, is
    /// that user's from the start. A quick pull can be over before any lookup sees the login
    /// uid: the lookup before it named the process, this names the user.
    pub fn login(&mut self, pid: u32, auid: u32, ts_us: i64) {
        if self.lookups.is_none() {
            return;
        }
        while self.logins.len() >= MAX_LOGINS || self.logins.front().is_some_and(|l| l.0 < ts_us - LOGIN_KEEP_US) {
            self.logins.pop_front();
        }
        self.logins.push_back((ts_us, pid, auid));
        let waiting: Vec<(Key, Arc<Owner>)> = self
            .flows
            .iter()
            .filter_map(|(k, f)| Some((*k, f.owner.clone().filter(|o| o.login_uid.is_none() && of_session(o, pid))?)))
            .collect();
        for (key, owner) in waiting {
            self.learn(key, &Lookup::Found(owner));
        }
    }

    /// The login uid a recent login gave `owner`'s process or its parent, if any.
    fn logged_in(&self, owner: &Owner) -> Option<u32> {
        self.logins.iter().rev().find(|(_, pid, _)| of_session(owner, *pid)).map(|l| l.2)
    }

    /// Takes the lookups' answers that arrived.
    pub fn poll(&mut self) {
        let Some(mut lookups) = self.lookups.take() else { return };
        lookups.poll(&mut |key, answer| {
            let key = (key.proto, key.local.ip(), key.local.port(), key.remote.ip(), key.remote.port());
            self.learn(key, answer);
        });
        self.lookups = Some(lookups);
    }

    fn learn(&mut self, key: Key, answer: &Lookup) {
        let with_login;
        let answer = match answer {
            Lookup::Found(o) if o.login_uid.is_none() => match self.logged_in(o) {
                Some(auid) => {
                    with_login = Lookup::Found(Arc::new(Owner { login_uid: Some(auid), ..Owner::clone(o) }));
                    &with_login
                }
                None => answer,
            },
            _ => answer,
        };
        let Some(f) = self.flows.get_mut(&key) else { return };
        // A socket does not leave a login session: an answer without a login uid after one
        // with it (a holder seen once the session's processes had ended) changes nothing.
        if let (Lookup::Found(o), Some(had)) = (answer, &f.owner) {
            if o.login_uid.is_none() && had.login_uid.is_some() {
                return;
            }
        }
        let first = f.owner.is_none();
        f.settled = !answer.provisional();
        match answer {
            Lookup::Found(owner) => {
                let login = owner.principal_uid();
                if first {
                    self.counters.owners_found += 1;
                    self.counters.owners_login += u64::from(login != owner.uid);
                }
                f.owner = Some(owner.clone());
                f.why = None;
                let who = Principal::Uid(login);
                if who != f.who {
                    if let Some(m) = moved(key, f, who) {
                        self.counters.recredited += m.rows.iter().map(|r| r.bytes).sum::<u64>();
                        self.moves.push((m, f.owner.clone()));
                    }
                    f.who = who;
                }
            }
            Lookup::Unknown(why) => {
                // That the socket has since ended says less than why it was not found before.
                let ended = matches!(why, Why::SocketGone | Why::TimeWait | Why::Closed);
                f.why = if ended { f.why.or(Some(*why)) } else { Some(*why) };
                if f.settled {
                    *self.unknown.entry(why.counter()).or_default() += 1;
                }
            }
        }
    }

    /// Held bytes that a changed answer moved to another principal since the last call, each
    /// with the flow's process.
    pub fn take_moves(&mut self) -> Vec<(Recredit, Option<Arc<Owner>>)> {
        std::mem::take(&mut self.moves)
    }

    /// Whether a changed answer moved bytes since the last [`take_moves`](Self::take_moves).
    pub fn moved(&self) -> bool {
        !self.moves.is_empty()
    }

    /// Hands out the program rows of held packets: every flow's when `all` (the end), else
    /// settled flows' and those held [`HOLD_US`] as of `now_us`. Live only: a replay (its flow
    /// memory) holds none.
    pub fn drain_programs(&mut self, now_us: i64, all: bool) -> Vec<ProgramRow> {
        if self.lookups.is_some() {
            for (&key, f) in &mut self.flows {
                let Some(held) = &mut f.held else { continue };
                let mut minutes = std::mem::take(&mut held.minutes);
                for c in &mut minutes {
                    if c.packets > 0 && (all || f.settled || now_us.saturating_sub(c.first_us) >= HOLD_US) {
                        self.programs.push(f.program_row(key, std::mem::take(c)));
                    }
                }
                if let Some(held) = &mut f.held {
                    // Still held: keep the newest first.
                    held.minutes = if minutes[0].packets == 0 { [minutes[1], Count::default()] } else { minutes };
                }
            }
        }
        std::mem::take(&mut self.programs)
    }

    /// Each counter with its stored name, the lookups' unknowns by reason among them.
    pub fn each(&self, f: &mut dyn FnMut(&'static str, u64)) {
        self.counters.each(f);
        for (k, v) in &self.unknown {
            f(k, *v);
        }
    }

    /// Forgets idle flows; if that is not enough, the idle-longest half.
    fn make_room(&mut self, now_us: i64) {
        let before = self.flows.len();
        self.sweep(now_us);
        if self.flows.len() >= MAX_FLOWS {
            let mut lasts: Vec<i64> = self.flows.values().map(|f| f.last_us).collect();
            let mid = lasts.len() / 2;
            let (_, &mut cutoff, _) = lasts.select_nth_unstable(mid);
            self.forget(|f| f.last_us <= cutoff);
            self.counters.evicted += (before - self.flows.len()) as u64;
        }
    }

    /// Forgets flows idle as of `now_us` (the pipeline calls this each minute).
    pub fn sweep(&mut self, now_us: i64) {
        self.forget(|f| now_us.saturating_sub(f.last_us) > IDLE_US);
    }

    /// Forgets the flows `gone` picks, handing out what they held.
    fn forget(&mut self, gone: impl Fn(&Flow) -> bool) {
        let programs = &mut self.programs;
        self.flows.retain(|&key, f| {
            if !gone(f) {
                return true;
            }
            if let Some(held) = &f.held {
                programs.extend(held.minutes.iter().filter(|c| c.packets > 0).map(|&c| f.program_row(key, c)));
            }
            false
        });
    }
}

/// Whether `owner` is the process `pid` or its child (sshd's pre-auth child holds the
/// connection's socket beside its monitor, which gets the login uid).
fn of_session(owner: &Owner, pid: u32) -> bool {
    owner.pid == pid || owner.ppid == Some(pid)
}

/// The held bytes of flow `f`, moving from its principal to `to`.
fn moved(key: Key, f: &Flow, to: Principal) -> Option<Recredit> {
    let held = f.held.as_ref()?;
    let rows: Vec<EgressRow> = held
        .minutes
        .iter()
        .filter(|c| c.packets > 0)
        .map(|c| EgressRow {
            principal: to,
            gid: held.gid,
            dst: dst(key),
            minute_us: c.minute_us,
            packets: c.packets,
            bytes: c.bytes,
            first_us: c.first_us,
            last_us: c.last_us,
            direction: held.direction,
            dst_name: None,
        })
        .collect();
    (!rows.is_empty()).then_some(Recredit { from: f.who, rows })
}

fn dst((proto, _, _, addr, port): Key) -> Dst {
    Dst { addr, port, proto }
}

fn flow_key((proto, src, sport, dst, dport): Key) -> FlowKey {
    FlowKey::egress(proto, src, sport, dst, dport)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::decode::L4;

    const S: i64 = 1_000_000;

    fn packet(ts_us: i64, uid: Option<u32>, sport: u16) -> Packet<'static> {
        Packet {
            ts_us,
            uid,
            gid: None,
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            proto: PROTO_TCP,
            sport,
            dport: 9000,
            wire_len: 1500,
            direction: Default::default(),
            l4: L4::Tcp { payload: &[] },
        }
    }

    /// Replay (the flow memory) and live (flows with their owners) alike.
    #[test]
    fn bytes_after_close_count_for_the_flows_uid() {
        for mut a in [Attribution::default(), Attribution::with_lookups(Box::new(Fake(Vec::new())))] {
            assert_eq!(a.principal(&packet(0, Some(1001), 40000)).0, Principal::Uid(1001));
            assert_eq!(a.principal(&packet(S, None, 40000)).0, Principal::Uid(1001));
            assert_eq!(a.counters.orphans, 1);
            // Another flow of the same host, never seen with a uid: the host.
            assert!(matches!(a.principal(&packet(S, None, 40001)).0, Principal::Host(_)));
            // Long after the flow went quiet: forgotten.
            assert!(matches!(a.principal(&packet(S + IDLE_US + 2 * S, None, 40000)).0, Principal::Host(_)));
        }
    }

    /// Answers as the live lookups give them: the first at once, the next through poll.
    struct Fake(Vec<(FlowKey, Lookup)>);

    impl Lookups for Fake {
        fn ask_new(&mut self, key: FlowKey) -> Option<Lookup> {
            self.0.iter().find(|(k, _)| *k == key).map(|(_, l)| l.clone()).filter(|_| key.local.port() == 40000)
        }
        fn ask_again(&mut self, key: FlowKey) -> Option<Lookup> {
            self.ask_new(key)
        }
        fn poll(&mut self, f: &mut dyn FnMut(&FlowKey, &Lookup)) {
            for (k, l) in self.0.drain(..) {
                f(&k, &l);
            }
        }
    }

    fn sshd_session(login: Option<u32>) -> Lookup {
        Lookup::Found(Arc::new(Owner {
            pid: 4242,
            ppid: Some(4241),
            start_time: 1,
            uid: 0,
            login_uid: login,
            comm: "sshd".into(),
            exe: "/usr/sbin/sshd".into(),
            unit: Some("session-3.scope".into()),
            cgroup: "/user.slice/user-1001.slice/session-3.scope".into(),
        }))
    }

    #[test]
    fn an_sshd_sessions_flow_is_the_login_users() {
        let p = packet(0, Some(0), 40000);
        let key = FlowKey::egress(p.proto, p.src, p.sport, p.dst, p.dport);
        let mut a = Attribution::with_lookups(Box::new(Fake(vec![(key, sshd_session(Some(1001)))])));
        let (who, owner) = a.principal(&p);
        assert_eq!(who, Principal::Uid(1001), "the socket is root's, the session alice's");
        assert!(!a.moved(), "answered before the packet was counted: nothing to move");
        assert_eq!(owner.unwrap().comm, "sshd");
        assert_eq!((a.counters.owners_found, a.counters.owners_login), (1, 1));
        // An answer arriving later (another flow): it applies from then on.
        let q = packet(S, Some(0), 40001);
        let later = FlowKey::egress(q.proto, q.src, q.sport, q.dst, q.dport);
        let mut a = Attribution::with_lookups(Box::new(Fake(vec![(later, sshd_session(Some(1002)))])));
        assert_eq!(a.principal(&q).0, Principal::Uid(0));
        a.poll();
        assert_eq!(a.principal(&q).0, Principal::Uid(1002));
    }

    /// Answers held back until the test hands them over.
    struct Later(Vec<(FlowKey, Lookup)>, bool);

    impl Lookups for Later {
        fn ask_new(&mut self, _: FlowKey) -> Option<Lookup> {
            None
        }
        fn ask_again(&mut self, _: FlowKey) -> Option<Lookup> {
            None
        }
        fn poll(&mut self, f: &mut dyn FnMut(&FlowKey, &Lookup)) {
            if std::mem::take(&mut self.1) {
                for (k, l) in self.0.drain(..) {
                    f(&k, &l);
                }
            }
        }
    }

    fn key_of(p: &Packet<'_>) -> FlowKey {
        FlowKey::egress(p.proto, p.src, p.sport, p.dst, p.dport)
    }

    /// Issue 11: an scp pull on veth is over before the lookup sees the login. What the flow
    /// counted for the socket's uid moves to the login user when the answer changes, minute by
    /// minute; program rows wait for the settled answer and name it.
    #[test]
    fn a_late_login_answer_moves_what_was_counted_and_names_the_program() {
        let p = packet(59 * S, Some(0), 40000);
        let mut a = Attribution::with_lookups(Box::new(Later(vec![(key_of(&p), sshd_session(Some(1001)))], false)));
        for ts in [59 * S, 59 * S + S / 2, 61 * S] {
            assert_eq!(a.principal(&packet(ts, Some(0), 40000)).0, Principal::Uid(0));
        }
        // Unsettled: held, not yet handed out, nothing moved.
        assert!(a.drain_programs(62 * S, false).is_empty());
        assert!(!a.moved());
        a.lookups = Some(Box::new(Later(vec![(key_of(&p), sshd_session(Some(1001)))], true)));
        a.poll();
        let moves = a.take_moves();
        let [(m, owner)] = &moves[..] else { panic!("{}", moves.len()) };
        assert_eq!(m.from, Principal::Uid(0));
        assert_eq!(owner.as_ref().unwrap().comm, "sshd");
        let per_minute: Vec<_> = m.rows.iter().map(|r| (r.principal, r.minute_us, r.packets, r.bytes)).collect();
        assert_eq!(
            per_minute,
            [(Principal::Uid(1001), MINUTE_US, 1, 1500), (Principal::Uid(1001), 0, 2, 3000)],
            "newest minute first"
        );
        assert_eq!(a.counters.recredited, 4500);
        // Settled now: later packets are the user's, and everything goes out as program rows.
        assert_eq!(a.principal(&packet(62 * S, Some(0), 40000)).0, Principal::Uid(1001));
        let rows = a.drain_programs(62 * S, false);
        assert_eq!(rows.iter().map(|r| r.bytes).sum::<u64>(), 6000);
        assert!(rows.iter().all(|r| r.principal == Principal::Uid(1001)
            && matches!(&r.program, Program::Found { comm, login_uid: Some(1001), .. } if &**comm == "sshd")));
        assert!(a.drain_programs(63 * S, true).is_empty(), "handed out once");
    }

    /// A pull over in less than a lookup's turn: the only answers name sshd's pre-auth child
    /// (whose parent, 4242, the session's monitor, gets the login) and, once the session has
    /// ended, a process without a login uid. The audit trail's LOGIN record names the user,
    /// whether it comes before the answer or after; an answer without a login uid after one
    /// with it changes nothing.
    #[test]
    fn an_audited_login_names_the_user_of_a_pull_no_lookup_saw_logged_in() {
        let pre_auth = |login: Option<u32>| match sshd_session(login) {
            Lookup::Found(o) => Lookup::Found(Arc::new(Owner { pid: 4243, ppid: Some(4242), ..Owner::clone(&o) })),
            other => other,
        };
        let p = packet(S, Some(0), 40000);
        for login_first in [false, true] {
            let mut a = Attribution::with_lookups(Box::new(Later(vec![(key_of(&p), pre_auth(None))], !login_first)));
            a.principal(&p);
            a.poll();
            assert_eq!(a.principal(&packet(2 * S, Some(0), 40000)).0, Principal::Uid(0));
            a.login(4242, 1001, 2 * S);
            if login_first {
                a.lookups = Some(Box::new(Later(vec![(key_of(&p), pre_auth(None))], true)));
                a.poll();
            }
            let moves = a.take_moves();
            let [(m, _)] = &moves[..] else { panic!("login first: {login_first}: {}", moves.len()) };
            assert_eq!((m.from, m.rows[0].principal, m.rows[0].bytes), (Principal::Uid(0), Principal::Uid(1001), 3000));
            let gone = Lookup::Found(Arc::new(Owner {
                pid: 1,
                ppid: None,
                login_uid: None,
                ..Owner::clone(&owner(&pre_auth(None)))
            }));
            a.lookups = Some(Box::new(Later(vec![(key_of(&p), gone)], true)));
            a.poll();
            assert!(!a.moved(), "moved back");
            assert_eq!(a.principal(&packet(3 * S, Some(0), 40000)).0, Principal::Uid(1001));
        }
        // Another process's login changes nothing.
        let mut a = Attribution::with_lookups(Box::new(Later(vec![(key_of(&p), pre_auth(None))], true)));
        a.principal(&p);
        a.poll();
        a.login(7, 1001, 2 * S);
        assert!(!a.moved());
    }

    fn owner(l: &Lookup) -> Arc<Owner> {
        match l {
            Lookup::Found(o) => o.clone(),
            Lookup::Unknown(why) => panic!("{why:?}"),
        }
    }

    #[test]
    fn a_flow_no_answer_names_is_unknown_with_its_reason_and_a_replay_holds_nothing() {
        let p = packet(0, Some(1000), 40000);
        let gone = Lookup::Unknown(Why::SocketGone);
        let mut a = Attribution::with_lookups(Box::new(Later(vec![(key_of(&p), gone)], true)));
        a.principal(&p);
        // Held while unanswered; after HOLD_US it goes out as it stands.
        assert!(a.drain_programs(HOLD_US - 1, false).is_empty());
        assert!(matches!(&a.drain_programs(HOLD_US, false)[..], [r] if r.program == Program::Unknown("unanswered")));
        a.poll();
        a.principal(&packet(S, Some(1000), 40000));
        assert!(matches!(&a.drain_programs(S, false)[..], [r] if r.program == Program::Unknown("socket_gone")));
        // Inbound DNS answers (not egress) are never counted.
        let mut answer = packet(2 * S, Some(1000), 40000);
        answer.direction = Direction::Answer;
        a.principal(&answer);
        assert!(a.drain_programs(2 * S, true).is_empty());

        let mut replay = Attribution::default();
        replay.principal(&p);
        assert!(replay.flows.values().all(|f| f.held.is_none()));
        assert!(replay.drain_programs(HOLD_US, true).is_empty());
    }

    #[test]
    fn a_flood_of_flows_is_bounded_and_counted() {
        let mut a = Attribution::with_lookups(Box::new(Fake(Vec::new())));
        for i in 0..(MAX_FLOWS as i64 + 10) {
            a.principal(&packet(i, Some(1), (i % 60000) as u16 + 1));
            let mut p = packet(i, Some(1), 1);
            p.src = IpAddr::V4(Ipv4Addr::from(i as u32));
            a.principal(&p);
        }
        assert!(a.flows.len() <= MAX_FLOWS);
        assert!(a.counters.evicted > 0);
    }
}
