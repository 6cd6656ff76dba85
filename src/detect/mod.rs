//! Detectors: state machines driven by decoded packets and their own timestamps, never the
//! wall clock, so a test or a replay drives them deterministically.

pub mod crosscheck;
pub mod dns;
pub mod icmp;
pub mod names;
pub mod sensitive;
pub mod tally;
pub mod volume;
pub mod window;
