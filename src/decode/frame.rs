//! What every source hands the decoder: a frame and its link-layer framing.

/// Link-layer framing of a captured frame, from the capture's DLT/LINKTYPE number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// 1: Ethernet II, possibly with 802.1Q / 802.1ad tags.
    Ethernet,
    /// 101 (and 12 on some systems): raw IP, version from the first nibble.
    RawIp,
    /// 228: raw IPv4.
    Ipv4,
    /// 229: raw IPv6.
    Ipv6,
    /// 113: Linux cooked capture v1.
    LinuxSll,
    /// 276: Linux cooked capture v2.
    LinuxSll2,
    /// 239: Linux NFLOG — the netlink message body with its TLVs, as `tcpdump -i nflog:N`
    /// writes it and as the kernel hands it to our own NFLOG socket.
    Nflog,
}

impl LinkType {
    /// Every link type exfilmon decodes.
    pub const ALL: [LinkType; 7] = [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Nflog,
    ];

    pub fn from_linktype(n: i32) -> Option<LinkType> {
        Some(match n {
            1 => LinkType::Ethernet,
            12 | 101 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            239 => LinkType::Nflog,
            _ => return None,
        })
    }
}

/// Names a link type number for error messages.
pub fn linktype_name(n: i32) -> String {
    let name = match n {
        0 => "NULL (BSD loopback)",
        6 => "IEEE 802.5 Token Ring",
        9 => "PPP",
        50 => "PPP over HDLC",
        105 => "IEEE 802.11",
        108 => "OpenBSD loopback",
        127 => "IEEE 802.11 radiotap",
        192 => "PPI",
        220 => "USB Linux mmapped",
        _ => return format!("link type {n}"),
    };
    format!("link type {n} ({name})")
}

/// One captured frame, borrowed from the source's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Capture time in microseconds since the Unix epoch. NFLOG records may carry a better
    /// kernel timestamp inside; the decoder prefers that one.
    pub ts_us: i64,
    pub link: LinkType,
    pub data: &'a [u8],
}
