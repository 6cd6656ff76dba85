//! pcap and pcapng files, read as a stream with `pcap-parser`.
//!
//! Guarantees: never panics on any input; an unreadable file or one that is not a capture is
//! an error naming the file; inside a readable capture, a record that cannot be framed (a
//! truncated tail, an absurd record length) is reported to the sink as damaged and reading
//! stops there, since a pcap has no markers to resynchronise on.
//!
//! The records of a legacy pcap (what `tcpdump -i nflog` writes) are handed over [`BATCH`] at a
//! time straight from the reader's buffer, so the sink can look a few packets ahead (the
//! pipeline prefetches what they will touch); everything else goes one block at a time.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcap_parser::pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified};
use pcap_parser::pcapng::Block;
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{create_reader, LegacyPcapBlock, PcapBlockOwned, PcapError, PcapHeader};

use super::FrameSink;
use crate::decode::{linktype_name, Frame, LinkType};

/// The counter of pcapng packet blocks whose interface was never described.
pub const NO_INTERFACE: &str = "pcapng_no_interface";

/// Larger than the largest legal snaplen (262144) plus a record header, so `BufferTooSmall`
/// can only mean a damaged length field.
const BUFFER: usize = 1 << 20;

/// Legacy records handed to the sink at a time: a few packets of lead for its prefetches,
/// few enough that their bytes are still in the CPU's cache when they are processed.
const BATCH: usize = 32;

/// Progress is reported every this many records.
const PROGRESS_EVERY: u64 = 65_536;

type ParseRecord = fn(&[u8]) -> pcap_parser::nom::IResult<&[u8], LegacyPcapBlock<'_>, PcapError<&[u8]>>;

/// What a legacy pcap's header says about its records.
#[derive(Clone, Copy)]
struct Legacy {
    link: LinkType,
    /// Nanoseconds per unit of the records' fraction field.
    nanos_per_unit: i64,
    parse: ParseRecord,
}

impl Legacy {
    fn of(h: &PcapHeader, link: LinkType) -> Legacy {
        let parse = match (h.is_modified_format(), h.is_bigendian()) {
            (true, _) => parse_pcap_frame_modified,
            (false, true) => parse_pcap_frame_be,
            (false, false) => parse_pcap_frame,
        };
        Legacy { link, nanos_per_unit: if h.is_nanosecond_precision() { 1 } else { 1000 }, parse }
    }

    fn frame<'a>(&self, rec: &LegacyPcapBlock<'a>) -> Frame<'a> {
        let ts_us = i64::from(rec.ts_sec) * 1_000_000 + i64::from(rec.ts_usec) * self.nanos_per_unit / 1000;
        Frame { ts_us, link: self.link, data: rec.data }
    }
}

/// Hands `sink` up to [`BATCH`] whole records from what `reader` has buffered; returns how many
/// (0: the next record is not whole in the buffer, or not a record: the caller's `next()` says
/// which) and the bytes they took.
fn legacy_batch(reader: &mut dyn PcapReaderIterator, legacy: &Legacy, sink: &mut dyn FrameSink) -> (u64, usize) {
    let data = reader.data();
    let mut rest = data;
    let mut frames = [Frame { ts_us: 0, link: legacy.link, data: &[] }; BATCH];
    let mut n = 0;
    while n < BATCH {
        let Ok((after, rec)) = (legacy.parse)(rest) else { break };
        frames[n] = legacy.frame(&rec);
        rest = after;
        n += 1;
    }
    if n > 0 {
        sink.frames(&frames[..n]);
    }
    let used = data.len() - rest.len();
    reader.consume(used);
    (n as u64, used)
}

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
    let mut legacy: Option<Legacy> = None;
    let mut interfaces: Vec<Interface> = Vec::new();
    // pcapng simple packets carry no time: they get the last time seen.
    let mut last_ts_us = 0;
    loop {
        if let Some(l) = &legacy {
            let before = stats.records;
            let (records, used) = legacy_batch(reader.as_mut(), l, sink);
            if records > 0 {
                stats.records += records;
                stats.bytes_read += used as u64;
                if before / PROGRESS_EVERY != stats.records / PROGRESS_EVERY {
                    progress(stats.bytes_read);
                }
                continue;
            }
        }
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let lt = h.network.0;
                        let link = LinkType::from_linktype(lt)
                            .ok_or_else(|| CaptureError::UnsupportedLinkType { path: path.to_owned(), linktype: lt })?;
                        legacy = Some(Legacy::of(&h, link));
                    }
                    PcapBlockOwned::Legacy(rec) => {
                        stats.records += 1;
                        if let Some(l) = &legacy {
                            sink.frame(l.frame(&rec));
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
                if stats.records % PROGRESS_EVERY == 0 {
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

    /// Every record of a legacy pcap bigger than the reader's buffer, in each byte order and
    /// time unit, reaches the sink once, in order, with its time, whether it came in a batch
    /// or (cut by the buffer's end) on its own.
    #[test]
    fn legacy_records_arrive_whole_and_in_order_across_refills() {
        #[derive(Default)]
        struct Seen(Vec<(i64, usize, u8)>);
        impl FrameSink for Seen {
            fn frame(&mut self, f: Frame<'_>) {
                self.0.push((f.ts_us, f.data.len(), f.data.first().copied().unwrap_or(0)));
            }
            fn damaged_record(&mut self) {}
        }
        let records: Vec<(u32, u32, Vec<u8>)> =
            (0..4000u32).map(|i| (1_700_000_000 + i, i * 7 % 1000, vec![i as u8; (i * 37 % 1500) as usize])).collect();
        for (magic, nanos, big) in
            [(0xa1b2_c3d4u32, false, false), (0xa1b2_3c4d, true, false), (0xa1b2_c3d4, false, true)]
        {
            let word = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
            let mut file = [word(magic), word(0x0004_0002), word(0), word(0), word(262_144), word(101)].concat();
            if big {
                // The version is two 16-bit fields, each in the file's byte order.
                file[4..8].copy_from_slice(&[0, 2, 0, 4]);
            } else {
                file[4..8].copy_from_slice(&[2, 0, 4, 0]);
            }
            for (sec, frac, data) in &records {
                let len = data.len() as u32;
                file.extend([word(*sec), word(*frac), word(len), word(len)].concat());
                file.extend(data);
            }
            assert!(file.len() > 2 * BUFFER);
            let mut seen = Seen::default();
            let stats = read(Path::new("t.pcap"), std::io::Cursor::new(file), &mut seen, &mut |_| {}).unwrap();
            assert_eq!(stats.records, records.len() as u64);
            let want: Vec<(i64, usize, u8)> = records
                .iter()
                .map(|(sec, frac, data)| {
                    let frac_us = if nanos { i64::from(*frac) / 1000 } else { i64::from(*frac) };
                    (i64::from(*sec) * 1_000_000 + frac_us, data.len(), data.first().copied().unwrap_or(0))
                })
                .collect();
            assert_eq!(seen.0, want, "magic {magic:x}, big-endian {big}");
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
