//! Capture sources: where frames come from. Live NFLOG and capture files differ only here;
//! everything after a [`Frame`] is the same pipeline.

pub mod audit;
pub mod nflog;
pub mod owner;
pub mod pcap;

use crate::decode::Frame;

/// Where a source delivers what it reads.
pub trait FrameSink {
    fn frame(&mut self, frame: Frame<'_>);
    /// Consecutive frames, in order: the same as one [`frame`](Self::frame) call each, which
    /// is what sinks that cannot use the lead do.
    fn frames(&mut self, frames: &[Frame<'_>]) {
        for f in frames {
            self.frame(*f);
        }
    }
    /// A record the source could not frame at all (damaged capture record).
    fn damaged_record(&mut self);
    /// A whole record the source cannot deliver, for `reason` (a counter name): a pcapng
    /// packet block naming no interface described before it, so of no known link type.
    /// Counted as damaged; sinks that count by reason also keep the reason.
    fn unusable_record(&mut self, reason: &'static str) {
        let _ = reason;
        self.damaged_record();
    }
}

/// The calling thread's effective capabilities (`CapEff` of `/proc/thread-self/status`), as a
/// bit set by capability number; `None` when unreadable.
pub(crate) fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}
