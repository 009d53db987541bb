//! Reading a token's claims JSON.
//!
//! DataHub writes its claims as one flat object of short plain strings and an
//! integer `exp`. [`read`] scans exactly that shape in place, borrowing every
//! string, and hands anything else (escapes, fractions, nulls, nested values,
//! duplicate keys, malformed JSON) to `serde_json`, so every input reads as
//! `serde_json` would read it, errors included; only the common case is faster.

use std::borrow::Cow;

use serde::Deserialize;

/// The claims as found, before any is checked. Every field is optional so the
/// caller can name a missing one.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawClaims<'a> {
    #[serde(borrow)]
    pub(super) version: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "type")]
    pub(super) token_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) actor_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) actor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) sub: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) jti: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) iss: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "super::numeric_date")]
    pub(super) exp: Option<i64>,
}

/// Reads `payload` as claims, quickly when it has DataHub's plain shape.
pub(super) fn read(payload: &[u8]) -> serde_json::Result<RawClaims<'_>> {
    match read_plain(payload) {
        Some(claims) => Ok(claims),
        None => serde_json::from_slice(payload),
    }
}

/// The fast path: `Some` only for an object of at most [`PLAIN_MAX`] bytes
/// whose values are all plain strings (no escapes or control characters) or,
/// for `exp` and unknown keys, non-negative integers of at most 18 digits,
/// each key at most once. `None` means "ask serde_json", never "invalid".
fn read_plain(payload: &[u8]) -> Option<RawClaims<'_>> {
    let quotes = plain_quotes(payload)?;
    // One UTF-8 check for the whole text; quotes are ASCII, so every string
    // cut out between two of them is then valid too.
    let text = std::str::from_utf8(payload).ok()?;
    let mut scan = Scanner { text, at: 0, quotes };
    let mut claims = RawClaims::default();
    scan.skip_space();
    scan.expect(b'{')?;
    scan.skip_space();
    if scan.peek() == Some(b'}') {
        scan.at += 1;
    } else {
        loop {
            let key = scan.plain_string()?;
            scan.skip_space();
            scan.expect(b':')?;
            scan.skip_space();
            let slot = match key {
                "version" => &mut claims.version,
                "type" => &mut claims.token_type,
                "actorType" => &mut claims.actor_type,
                "actorId" => &mut claims.actor_id,
                "sub" => &mut claims.sub,
                "jti" => &mut claims.jti,
                "iss" => &mut claims.iss,
                "exp" => {
                    if claims.exp.is_some() {
                        return None; // duplicate: serde_json reports it
                    }
                    claims.exp = Some(scan.plain_integer()?);
                    scan.skip_space();
                    if scan.next_member()? {
                        continue;
                    }
                    break;
                }
                _ => {
                    // Ignored, as serde_json ignores unknown claims.
                    match scan.peek()? {
                        b'"' => drop(scan.plain_string()?),
                        _ => drop(scan.plain_integer()?),
                    }
                    scan.skip_space();
                    if scan.next_member()? {
                        continue;
                    }
                    break;
                }
            };
            if slot.is_some() {
                return None; // duplicate: serde_json reports it
            }
            *slot = Some(Cow::Borrowed(scan.plain_string()?));
            scan.skip_space();
            if !scan.next_member()? {
                break;
            }
        }
    }
    scan.skip_space();
    (scan.at == text.len()).then_some(claims)
}

/// Longest claims text the fast path reads (DataHub's are about 200 bytes).
const PLAIN_MAX: usize = 512;

/// Where the quotes of `payload` are, one bit per byte, if it has no
/// backslash or control character (so every string in it is plain and ends
/// at its next quote) and is at most [`PLAIN_MAX`] bytes long.
///
/// One branch-free pass, eight bytes at a time (SWAR): finding each string's
/// end byte by byte cost more than the rest of the scan together (measured).
fn plain_quotes(payload: &[u8]) -> Option<[u64; PLAIN_MAX / 64]> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const LOW7: u64 = u64::from_le_bytes([0x7f; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `x` that is zero (exact: no carries
    // between bytes, unlike the shorter `(x - ONES) & !x & HIGH`).
    let zero_bytes = |x: u64| !(((x & LOW7) + LOW7) | x) & HIGH;
    if payload.len() > PLAIN_MAX {
        return None;
    }
    let mut quotes = [0u64; PLAIN_MAX / 64];
    let mut special = 0;
    let blocks = payload.chunks_exact(64);
    // The last block is padded with spaces, which are neither.
    let mut last = [b' '; 64];
    last[..blocks.remainder().len()].copy_from_slice(blocks.remainder());
    for (quote_bits, block) in quotes.iter_mut().zip(blocks.chain([&last[..]])) {
        // Built in a register: or-ing into the array in memory chained
        // every step to the last one's store.
        let mut bits = 0;
        for (n, chunk) in block.chunks_exact(8).enumerate() {
            let x = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            // A byte below 0x20 is one whose low seven bits plus 0x60 stay
            // below 0x80 and whose own high bit is clear.
            special |= zero_bytes(x ^ (ONES * u64::from(b'\\'))) | (!(((x & LOW7) + ONES * 0x60) | x) & HIGH);
            // Gathers the eight high bits into the top byte, in byte order.
            let quotes_here =
                zero_bytes(x ^ (ONES * u64::from(b'"'))).wrapping_mul(0x0002_0408_1020_4081) >> 56;
            bits |= quotes_here << (n * 8);
        }
        *quote_bits = bits;
    }
    (special == 0).then_some(quotes)
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
    /// See [`plain_quotes`].
    quotes: [u64; PLAIN_MAX / 64],
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// After a member: `true` at `,` (then at the next key's quote), `false` at `}`.
    fn next_member(&mut self) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.skip_space();
                (self.peek()? == b'"').then_some(true)
            }
            b'}' => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A string, borrowed: up to the next quote, as the text holds no
    /// escapes or control characters (checked up front by `read_plain`).
    fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let end = self.next_quote(start)?;
        self.at = end + 1;
        self.text.get(start..end)
    }

    /// The position of the first quote at or after `from`.
    fn next_quote(&self, from: usize) -> Option<usize> {
        let mut word = from / 64;
        let mut bits = self.quotes.get(word)? & (u64::MAX << (from % 64));
        while bits == 0 {
            word += 1;
            bits = *self.quotes.get(word)?;
        }
        Some(word * 64 + bits.trailing_zeros() as usize)
    }

    /// A non-negative integer without a leading zero, fraction or exponent,
    /// small enough that it cannot overflow.
    fn plain_integer(&mut self) -> Option<i64> {
        let start = self.at;
        let mut value: i64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value.checked_mul(10)?.checked_add(i64::from(digit - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        let leading_zero = digits > 1 && self.text.as_bytes()[start] == b'0';
        let more = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (digits > 0 && digits <= 18 && !leading_zero && !more).then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DATAHUB: &str = r#"{"actorType":"USER","actorId":"datahub","type":"PERSONAL","version":"2","jti":"0b1c6b6e-5d3c-4c56-8a5d-0d6c0b0e8e59","sub":"datahub","exp":1700000000,"iss":"datahub-metadata-service"}"#;

    #[test]
    fn reads_datahub_claims_without_serde() {
        let claims = read_plain(DATAHUB.as_bytes()).expect("plain shape");
        assert_eq!(claims.actor_id.as_deref(), Some("datahub"));
        assert_eq!(claims.exp, Some(1_700_000_000));
        assert!(matches!(claims.version, Some(Cow::Borrowed("2"))));
        assert_eq!(claims, serde_json::from_str(DATAHUB).unwrap());
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for json in [
            r#"{"actorId":"a\"b"}"#,
            r#"{"exp":1.5e9}"#,
            r#"{"exp":-1}"#,
            r#"{"exp":01}"#,
            r#"{"exp":12345678901234567890}"#,
            r#"{"sub":null}"#,
            r#"{"foo":[1]}"#,
            r#"{"foo":true}"#,
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"exp":1,"exp":2}"#,
            r#"{"sub":"a",}"#,
            r#"{"sub":"a"} x"#,
            "{\"sub\":\"a\tb\"}",
            r#"[1,2]"#,
            r#"{"sub":"a""#,
            "",
        ] {
            assert!(read_plain(json.as_bytes()).is_none(), "{json}");
        }
        assert!(read_plain(b"{\"sub\":\"\xff\"}").is_none());
    }

    #[test]
    fn long_claims_cross_blocks_and_past_the_limit_go_to_serde() {
        // Strings that straddle the 64-byte blocks of the quote map, up to
        // exactly PLAIN_MAX bytes; one byte more is serde_json's to read.
        let json_of = |len: usize| {
            let fixed = r#"{"actorId":"","sub":"x"}"#.len();
            format!(r#"{{"actorId":"{}","sub":"x"}}"#, "a".repeat(len - fixed))
        };
        for len in [63, 64, 65, 127, 128, 129, PLAIN_MAX - 1, PLAIN_MAX] {
            let json = json_of(len);
            assert_eq!(json.len(), len);
            let claims = read_plain(json.as_bytes()).expect("plain shape");
            assert_eq!(claims, serde_json::from_str(&json).unwrap(), "{len}");
            assert_eq!(claims.sub.as_deref(), Some("x"));
        }
        let json = json_of(PLAIN_MAX + 1);
        assert!(read_plain(json.as_bytes()).is_none());
        assert_eq!(
            read(json.as_bytes()).unwrap(),
            serde_json::from_str(&json).unwrap()
        );
    }

    #[test]
    fn every_escape_or_control_character_anywhere_is_left_to_serde() {
        let json = r#"{"actorId":"datahub","sub":"datahub","iss":"datahub-metadata-service","jti":"x"}"#;
        for at in 0..json.len() {
            for byte in [b'\\', 0x00, 0x1f, b'\n'] {
                let mut bytes = json.as_bytes().to_vec();
                bytes[at] = byte;
                assert!(read_plain(&bytes).is_none(), "{byte:#x} at {at}");
            }
        }
        // DEL and non-ASCII are plain JSON text.
        let json = "{\"sub\":\"a\u{7f}é\"}";
        assert_eq!(
            read_plain(json.as_bytes()).unwrap().sub.as_deref(),
            Some("a\u{7f}é")
        );
    }

    /// JSON text built from fragments that hit the scanner's edges: plain and
    /// escaped strings, odd numbers, nulls, whitespace, repeats, stray bytes.
    fn claims_json() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "version",
            "type",
            "actorType",
            "actorId",
            "sub",
            "jti",
            "iss",
            "exp",
            "foo",
            "ver\\u0073ion",
        ]);
        let value = prop::sample::select(vec![
            "\"2\"",
            "\"USER\"",
            "\"\"",
            "\"a b\"",
            "\"é\"",
            "\"a\\\"b\"",
            "\"a\\u0041\"",
            "1700000000",
            "0",
            "01",
            "-5",
            "1.5",
            "2e3",
            "null",
            "true",
            "[]",
            "{}",
            "123456789012345678",
            "1234567890123456789",
        ]);
        let space = prop::sample::select(vec!["", " ", "\n\t", "\r"]);
        let member = (space.clone(), key, space.clone(), value, space.clone())
            .prop_map(|(a, k, b, v, c)| format!("{a}\"{k}\"{b}:{v}{c}"));
        (
            prop::collection::vec(member, 0..24),
            prop::sample::select(vec!["", ",", " x", "}"]),
        )
            .prop_map(|(members, tail)| format!("{{{}}}{tail}", members.join(",")))
    }

    proptest! {
        #[test]
        fn fast_path_reads_what_serde_reads(json in claims_json()) {
            if let Some(fast) = read_plain(json.as_bytes()) {
                let slow: RawClaims<'_> = serde_json::from_str(&json).expect("serde accepts what the fast path accepts");
                prop_assert_eq!(fast, slow);
            }
        }

        #[test]
        fn any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Some(fast) = read_plain(&bytes) {
                prop_assert_eq!(Some(fast), serde_json::from_slice(&bytes).ok());
            }
        }
    }
}
