//! pcap and pcapng files, read as a stream with `pcap-parser`.
//!
//! Guarantees: never panics on any input; an unreadable file or one that is not a capture is
//! an error naming the file; inside a readable capture, a record that cannot be framed (a
//! truncated tail, an absurd record length) is reported to the sink as damaged and reading
//! stops there, since a pcap has no markers to resynchronise on.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapNGPacketBlock;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

use super::FrameSink;
use crate::decode::{linktype_name, Frame, LinkType};

/// The counter of pcapng packet blocks whose interface was never described.
pub const NO_INTERFACE: &str = "pcapng_no_interface";

/// Larger than the largest legal snaplen (262144) plus a record header, so `BufferTooSmall`
/// can only mean a damaged length field.
const BUFFER: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{} is a directory, not a capture file", path.display())]
    Directory { path: PathBuf },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{} is not a pcap or pcapng capture (unrecognised header)", path.display())]
    NotCapture { path: PathBuf },
    #[error("{}: unsupported {}; exfilmon reads Ethernet (1), raw IP (101, 228, 229), Linux cooked (113, 276) and NFLOG (239)", path.display(), linktype_name(*linktype))]
    UnsupportedLinkType { path: PathBuf, linktype: i32 },
    #[error("cannot read {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
}

/// What one pass over a capture saw, besides the frames themselves.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    pub records: u64,
    pub damaged: u64,
    /// Bytes of the file consumed; for progress reporting.
    pub bytes_read: u64,
    /// Why reading stopped early, if it did: the records before it were delivered.
    pub damage: Option<Damage>,
}

/// The damage that stopped a capture's reading, for the error a person reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("record {record} claims more than 1 MiB (a damaged length field)")]
    TooLong { record: u64 },
    #[error("record {record} is cut short (the file ends inside it)")]
    CutShort { record: u64 },
    #[error("record {record} is corrupt")]
    Corrupt { record: u64 },
}

/// Reads every frame of the capture at `path` into `sink`. `progress` is told the number of
/// file bytes consumed so far, now and then.
pub fn read_file(
    path: &Path,
    sink: &mut dyn FrameSink,
    progress: &mut dyn FnMut(u64),
) -> Result<ReadStats, CaptureError> {
    let open_err = |source| CaptureError::Open { path: path.to_owned(), source };
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.is_dir() {
        return Err(CaptureError::Directory { path: path.to_owned() });
    }
    let file = File::open(path).map_err(open_err)?;
    read(path, file, sink, progress)
}

/// [`read_file`] from any reader (one that hashes what it passes on, say); `path` only names
/// the capture in errors.
pub fn read<R: Read + Send>(
    path: &Path,
    input: R,
    sink: &mut dyn FrameSink,
    progress: &mut dyn FnMut(u64),
) -> Result<ReadStats, CaptureError> {
    let mut reader = match create_reader(BUFFER, input) {
        Ok(r) => r,
        Err(PcapError::Eof) => return Err(CaptureError::Empty { path: path.to_owned() }),
        Err(PcapError::ReadError) => {
            return Err(CaptureError::Read { path: path.to_owned(), message: "read failed".into() })
        }
        Err(_) => return Err(CaptureError::NotCapture { path: path.to_owned() }),
    };
    let mut stats = ReadStats::default();
    // pcap: one link type and resolution for the file. pcapng: per interface, per section.
    let mut legacy: Option<(LinkType, i64)> = None;
    let mut interfaces: Vec<Interface> = Vec::new();
    // pcapng simple packets carry no time: they get the last time seen.
    let mut last_ts_us = 0;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let lt = h.network.0;
                        let link = LinkType::from_linktype(lt)
                            .ok_or_else(|| CaptureError::UnsupportedLinkType { path: path.to_owned(), linktype: lt })?;
                        let nanos = if h.is_nanosecond_precision() { 1 } else { 1000 };
                        legacy = Some((link, nanos));
                    }
                    PcapBlockOwned::Legacy(rec) => {
                        stats.records += 1;
                        if let Some((link, nanos_per_unit)) = legacy {
                            let ts_us =
                                i64::from(rec.ts_sec) * 1_000_000 + i64::from(rec.ts_usec) * nanos_per_unit / 1000;
                            sink.frame(Frame { ts_us, link, data: rec.data });
                        }
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => interfaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        let lt = idb.linktype.0;
                        let link = LinkType::from_linktype(lt)
                            .ok_or_else(|| CaptureError::UnsupportedLinkType { path: path.to_owned(), linktype: lt })?;
                        interfaces.push(Interface {
                            link,
                            resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                            offset: idb.ts_offset() as u64,
                            snaplen: idb.snaplen,
                        });
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        stats.records += 1;
                        match interfaces.get(epb.if_id as usize) {
                            Some(ifc) => {
                                let (secs, frac) = epb.decode_ts(ifc.offset, ifc.resolution);
                                let frac_us = u128::from(frac) * 1_000_000 / u128::from(ifc.resolution);
                                let ts_us = i64::from(secs) * 1_000_000 + frac_us as i64;
                                last_ts_us = ts_us;
                                // The packet, without the block's padding to 4 bytes.
                                sink.frame(Frame { ts_us, link: ifc.link, data: epb.packet_data() });
                            }
                            None => {
                                stats.damaged += 1;
                                sink.unusable_record(NO_INTERFACE);
                            }
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        stats.records += 1;
                        match interfaces.first() {
                            Some(ifc) => {
                                // Captured: the original length cut at the snaplen (0: none).
                                let snaplen = if ifc.snaplen == 0 { u32::MAX } else { ifc.snaplen };
                                let len = spb.origlen.min(snaplen) as usize;
                                let data = &spb.data[..len.min(spb.data.len())];
                                sink.frame(Frame { ts_us: last_ts_us, link: ifc.link, data });
                            }
                            None => {
                                stats.damaged += 1;
                                sink.unusable_record(NO_INTERFACE);
                            }
                        }
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                stats.bytes_read += offset as u64;
                reader.consume(offset);
                if stats.records % 65_536 == 0 {
                    progress(stats.bytes_read);
                }
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    return Err(CaptureError::Read { path: path.to_owned(), message: "read failed".into() });
                }
            }
            Err(PcapError::ReadError) => {
                return Err(CaptureError::Read { path: path.to_owned(), message: "read failed".into() })
            }
            // Truncated last record, absurd record length, or a corrupt block: count it and stop.
            Err(e) => {
                let record = stats.records + 1;
                stats.damage = Some(match e {
                    PcapError::BufferTooSmall => Damage::TooLong { record },
                    PcapError::UnexpectedEof => Damage::CutShort { record },
                    _ => Damage::Corrupt { record },
                });
                stats.damaged += 1;
                sink.damaged_record();
                break;
            }
        }
    }
    progress(stats.bytes_read);
    Ok(stats)
}

struct Interface {
    link: LinkType,
    resolution: u64,
    offset: u64,
    snaplen: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Lengths {
        frames: Vec<usize>,
        unusable: Vec<&'static str>,
    }

    impl FrameSink for Lengths {
        fn frame(&mut self, frame: Frame<'_>) {
            self.frames.push(frame.data.len());
        }
        fn damaged_record(&mut self) {}
        fn unusable_record(&mut self, reason: &'static str) {
            self.unusable.push(reason);
        }
    }

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        let mut b = [kind.to_le_bytes(), len.to_le_bytes()].concat();
        b.extend_from_slice(body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    /// A simple packet block holds the original length cut at the interface's snaplen, then
    /// padding: the frame is the cut packet alone.
    #[test]
    fn simple_packet_is_cut_at_the_snaplen_without_padding() {
        let mut file =
            block(0x0a0d_0d0a, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        file.extend(block(1, &[101, 0, 0, 0, 42, 0, 0, 0]));
        let mut spb = 1500u32.to_le_bytes().to_vec();
        spb.extend_from_slice(&[0x45; 42]);
        spb.extend_from_slice(&[0xee; 2]);
        file.extend(block(3, &spb));
        let mut sink = Lengths::default();
        let stats = read(Path::new("spb.pcapng"), &file[..], &mut sink, &mut |_| {}).unwrap();
        assert_eq!((stats.records, stats.damaged), (1, 0));
        assert_eq!(sink.frames, [42]);
    }

    #[test]
    fn edge_fixture_frames_and_unusable_records() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/pcapng-edges.pcapng");
        let mut sink = Lengths::default();
        let stats = read_file(&path, &mut sink, &mut |_| {}).unwrap();
        assert_eq!((stats.records, stats.damaged), (5, 2));
        assert_eq!(sink.frames, [41, 41, 61]);
        assert_eq!(sink.unusable, [NO_INTERFACE; 2]);
    }
}
