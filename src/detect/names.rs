//! What the subdomain part of a query name looks like: its alphabet, its entropy made fair
//! across lengths, and how much data it could carry.
//!
//! Entropy alone misleads: a short word has nearly as many distinct letters as it has
//! letters, so its entropy sits near its ceiling log2(length), and a random string's entropy
//! cannot exceed log2 of its alphabet (4 bits for hex, 5 for base32, 6 for base64). Dividing
//! by the lower of the two ceilings gives a "fairness" in 0..=1 that compares names of any
//! length, and a name is only called encoded when it is also long enough and mixes letters
//! with digits, as encodings do and words do not.

/// The alphabet a name's characters come from, the narrowest that fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Alphabet {
    /// No characters (the name is the registered domain itself).
    Empty,
    /// Letters, digits, hyphens, underscores: what host names are made of.
    Ldh,
    /// Hex digits with at least one letter and one digit.
    Hex,
    /// One case of letters with digits: base32 and its relatives.
    Base32,
    /// Both cases, or `+ / =`: base64 and its relatives.
    Base64,
    /// Bytes outside printable ASCII (iodine's base128 and raw binary).
    Binary,
}

impl Alphabet {
    /// Data bits one character can carry in this alphabet.
    pub fn bits(self) -> u64 {
        match self {
            Alphabet::Empty => 0,
            Alphabet::Ldh | Alphabet::Hex => 4,
            Alphabet::Base32 => 5,
            Alphabet::Base64 => 6,
            Alphabet::Binary => 7,
        }
    }

    fn size(self) -> f32 {
        match self {
            Alphabet::Empty => 1.0,
            Alphabet::Hex => 16.0,
            Alphabet::Base32 => 32.0,
            Alphabet::Ldh => 38.0,
            Alphabet::Base64 => 64.0,
            Alphabet::Binary => 256.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alphabet::Empty => "empty",
            Alphabet::Ldh => "ldh",
            Alphabet::Hex => "hex",
            Alphabet::Base32 => "base32",
            Alphabet::Base64 => "base64",
            Alphabet::Binary => "binary",
        }
    }
}

/// Features of the characters left of the registered domain (dots excluded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub alphabet: Alphabet,
    /// Characters, dots excluded.
    pub chars: usize,
    /// Bytes outside printable ASCII.
    pub nonprint: usize,
    /// Shannon entropy in bits per character, case folded (so 0x20 randomisation by
    /// resolvers does not raise it).
    pub entropy: f32,
    /// `entropy` divided by its ceiling for this length and alphabet: 0..=1.
    pub fairness: f32,
}

impl Shape {
    /// Measures the labels of a name's subdomain part (raw bytes, original case).
    pub fn of<'a>(labels: impl IntoIterator<Item = &'a [u8]>) -> Shape {
        // Per-byte work is a table lookup; entropy only visits the distinct bytes seen.
        let mut counts = [0u16; 256];
        let mut distinct = [0u8; 256];
        let (mut kinds, mut ndistinct, mut nonprint, mut chars) = (0u8, 0usize, 0usize, 0usize);
        for &c in labels.into_iter().flatten() {
            let kind = KIND[usize::from(c)];
            kinds |= kind;
            nonprint += usize::from(kind == NONPRINT);
            chars += 1;
            let k = usize::from(c.to_ascii_lowercase());
            if counts[k] == 0 {
                distinct[ndistinct] = k as u8;
                ndistinct += 1;
            }
            counts[k] = counts[k].saturating_add(1);
        }
        let has = |k: u8| kinds & k != 0;
        let letter = has(HEX_LOWER | HEX_UPPER | LOWER | UPPER);
        let (upper, lower) = (has(HEX_UPPER | UPPER), has(HEX_LOWER | LOWER));
        let alphabet = if chars == 0 {
            Alphabet::Empty
        } else if nonprint > 0 {
            Alphabet::Binary
        } else if has(SYMBOL) || (upper && lower && has(DIGIT)) {
            Alphabet::Base64
        } else if has(LDH_EXTRA) || !(letter && has(DIGIT)) {
            Alphabet::Ldh
        } else if !has(LOWER | UPPER) {
            Alphabet::Hex
        } else {
            Alphabet::Base32
        };
        let entropy = entropy(distinct[..ndistinct].iter().map(|&k| counts[usize::from(k)]), chars);
        let ceiling = (chars as f32).min(alphabet.size()).log2();
        let fairness = if ceiling > 0.0 { (entropy / ceiling).min(1.0) } else { 0.0 };
        Shape { alphabet, chars, nonprint, entropy, fairness }
    }

    /// Looks like encoded data: binary bytes, or at least `min_chars` characters of a
    /// hex/base32/base64 alphabet whose entropy is near that alphabet's ceiling.
    pub fn looks_encoded(&self, min_chars: usize) -> bool {
        match self.alphabet {
            Alphabet::Binary => true,
            Alphabet::Hex | Alphabet::Base32 | Alphabet::Base64 => self.chars >= min_chars && self.fairness >= 0.75,
            Alphabet::Empty | Alphabet::Ldh => false,
        }
    }

    /// Estimated data bytes the characters carry.
    pub fn carried_bytes(&self) -> u64 {
        self.chars as u64 * self.alphabet.bits() / 8
    }
}

// Character kinds, one bit each, looked up per byte.
const DIGIT: u8 = 1;
const HEX_LOWER: u8 = 2;
const HEX_UPPER: u8 = 4;
const LOWER: u8 = 8;
const UPPER: u8 = 16;
const LDH_EXTRA: u8 = 32;
const SYMBOL: u8 = 64;
const NONPRINT: u8 = 128;

static KIND: [u8; 256] = {
    let mut t = [NONPRINT; 256];
    let mut c = 0x21;
    while c < 0x7f {
        t[c] = match c as u8 {
            b'0'..=b'9' => DIGIT,
            b'a'..=b'f' => HEX_LOWER,
            b'A'..=b'F' => HEX_UPPER,
            b'g'..=b'z' => LOWER,
            b'G'..=b'Z' => UPPER,
            b'-' | b'_' => LDH_EXTRA,
            _ => SYMBOL,
        };
        c += 1;
    }
    t
};

/// Shannon entropy in bits per symbol of `n` symbols with the given counts.
fn entropy(counts: impl Iterator<Item = u16>, n: usize) -> f32 {
    if n < 2 {
        return 0.0;
    }
    let n = n as f32;
    let sum: f32 = counts.map(|c| f32::from(c) * f32::from(c).log2()).sum();
    (n.log2() - sum / n).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(s: &str) -> Shape {
        Shape::of(s.split('.').map(str::as_bytes))
    }

    #[test]
    fn ordinary_host_names_are_not_encoded() {
        for name in [
            "www",
            "mail",
            "static-assets-production",
            "r3---sn-4g5e6nz7",
            "v10.events.data",
            "internationalization",
            "selector1._domainkey",
            "wWw",
            "1.0.168.192",
            "d3c33hcgiwev3",
            "prod-2-4fb2a2c8.elb",
        ] {
            assert!(!shape(name).looks_encoded(20), "{name}: {:?}", shape(name));
        }
    }

    #[test]
    fn encodings_are_recognised() {
        let hex = shape("4a6f686e20536d6974682070617373776f72643a2068756e74657232");
        assert_eq!(hex.alphabet, Alphabet::Hex);
        assert!(hex.looks_encoded(20), "{hex:?}");
        let b32 = shape("nbswy3dpeb3w64tmmqqhi2dfebtw64tpmzzw4ylsorzsa3tf");
        assert_eq!(b32.alphabet, Alphabet::Base32);
        assert!(b32.looks_encoded(20), "{b32:?}");
        let b64 = shape("SGVsbG8gV29ybGQhIFRoaXMgaXMgYSB0dW5uZWw");
        assert_eq!(b64.alphabet, Alphabet::Base64);
        assert!(b64.looks_encoded(20), "{b64:?}");
        let bin = Shape::of([&b"a\xff"[..], b"\x1bz"]);
        assert_eq!((bin.alphabet, bin.nonprint), (Alphabet::Binary, 2));
        assert!(bin.looks_encoded(20));
    }

    #[test]
    fn fairness_compares_lengths() {
        // Same alphabet, random content: similar fairness whatever the length.
        let short = shape("k3j5m2q7");
        let long = shape("k3j5m2q7xv4tn6bw2hc5pd7rf3gz6ya4se5ul2ow7ie3");
        assert!((short.fairness - long.fairness).abs() < 0.15, "{short:?} {long:?}");
        // Repetition is not information.
        assert!(shape("aaaaaaaaaaaaaaaaaaaaaaaa2").fairness < 0.2);
    }

    #[test]
    fn dots_between_labels_are_not_characters() {
        let s = shape("ab.cd");
        assert_eq!(s.chars, 4);
        assert_eq!(shape("").alphabet, Alphabet::Empty);
        assert_eq!(shape("").carried_bytes(), 0);
    }

    #[test]
    fn carried_bytes_follow_the_alphabet() {
        assert_eq!(shape("00112233445566778899aabbccddeeff").carried_bytes(), 16);
    }
}
