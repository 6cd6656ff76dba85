//! exfilmon: a boundary monitor that tells a Linux server's owner when data leaves it.
//!
//! One pipeline — source (NFLOG | capture file) → [`decode`] → [`detect`] → [`store`] —
//! wired in [`pipeline`]. Live monitoring and replay differ only in the source; both run it
//! in a [`session`] (database, writer thread, sinks, shutdown), the live monitor inside the
//! [`daemon`].

pub mod alert;
pub mod attribute;
pub mod cli;
pub mod config;
pub mod config_errors;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod escape;
pub mod flows;
pub mod health;
pub mod logging;
pub mod nft;
pub mod pipeline;
mod prefetch;
pub mod principal;
pub mod report;
pub mod respond;
pub mod rows;
pub mod session;
pub mod ship;
pub mod sink;
pub mod source;
pub mod store;
pub mod trail;
pub mod units;
