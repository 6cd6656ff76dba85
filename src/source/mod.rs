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
    /// A record the source could not frame at all (damaged capture record).
    fn damaged_record(&mut self);
}
