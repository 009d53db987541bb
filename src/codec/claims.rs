//! Reading a token's claims JSON.
//!
//! DataHub writes its claims as one flat object of short plain strings and an
//! integer `exp`. [`read`] scans exactly that shape in place, borrowing every
//! string, and hands anything else (escapes, fractions, nulls, nested values,
//! duplicate keys, malformed JSON) to `serde_json`, so every input reads as
//! `serde_json` would read it, errors included; only the common case is faster.
//! Claims laid out exactly as this crate writes them are read faster still,
//! by checking that layout instead of discovering it.

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
    /// Whether an `nbf` (not before) claim is there, whatever its value.
    #[serde(default, deserialize_with = "present")]
    pub(super) nbf: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// Reads `payload` as claims, quickly when it has DataHub's plain shape.
pub(super) fn read(payload: &[u8]) -> serde_json::Result<RawClaims<'_>> {
    match read_plain(payload) {
        Some(claims) => Ok(claims),
        // serde would also read a struct from an array; a JWT's claims are
        // an object (RFC 7519), and DataHub's JWT library refuses anything else.
        None if !opens_object(payload) => Err(serde::de::Error::custom("claims are not a JSON object")),
        None => serde_json::from_slice(payload),
    }
}

/// Whether `json` starts (after white space) as an object does.
pub(super) fn opens_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b" \t\n\r".contains(b)) == Some(&b'{')
}

/// The fast path: `Some` only for an object of at most [`PLAIN_MAX`] bytes
/// whose values are all plain strings (no escapes or control characters) or,
/// for `exp` and unknown keys, non-negative integers of at most 18 digits,
/// each key at most once. `None` means "ask serde_json", never "invalid".
fn read_plain(payload: &[u8]) -> Option<RawClaims<'_>> {
    let quotes = plain_quotes(payload)?;
    let scan = Scanner::new(payload, &quotes)?;
    scan.clone().our_layout().or_else(|| scan.members())
}

/// Longest claims text the fast path reads (DataHub's are about 200 bytes).
const PLAIN_MAX: usize = 512;

/// Where the quotes of `payload` are, one bit per byte, if it has no
/// backslash or control character (so every string in it is plain and ends
/// at its next quote) and is at most [`PLAIN_MAX`] bytes long.
///
/// One branch-free pass, eight bytes at a time (SWAR): finding each string's
/// end byte by byte cost more than the rest of the scan together (measured).
#[inline(always)]
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

#[derive(Clone)]
struct Scanner<'a, 'q> {
    text: &'a str,
    at: usize,
    /// See [`plain_quotes`]. Borrowed: each read clones the scanner, and the
    /// map copied into the clone cost some 4% of a first-sight validation (measured).
    quotes: &'q [u64; PLAIN_MAX / 64],
    /// The quotes of `quotes[word]` not yet taken by [`Scanner::next_quote`].
    /// Every quote before `at` has been: the scanner moves past a quote
    /// only after taking it.
    word: usize,
    bits: u64,
}

// The scanner's steps are inlined into its two readers: out of line, `at`
// made a round trip through memory at every step (measured).
impl<'a, 'q> Scanner<'a, 'q> {
    /// A scanner at the start of `payload`, if it is UTF-8, given the
    /// `quotes` of it that [`plain_quotes`] found.
    fn new(payload: &'a [u8], quotes: &'q [u64; PLAIN_MAX / 64]) -> Option<Self> {
        // One UTF-8 check for the whole text; quotes are ASCII, so every
        // string cut out between two of them is then valid too.
        let text = std::str::from_utf8(payload).ok()?;
        Some(Scanner {
            text,
            at: 0,
            bits: quotes[0],
            word: 0,
            quotes,
        })
    }

    /// Any object of plain members, in any order and spacing.
    fn members(mut self) -> Option<RawClaims<'a>> {
        let mut claims = RawClaims::default();
        self.skip_space();
        self.expect(b'{')?;
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                let key = self.plain_string()?;
                self.skip_space();
                self.expect(b':')?;
                self.skip_space();
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
                        claims.exp = Some(self.plain_integer()?);
                        self.skip_space();
                        if self.next_member()? {
                            continue;
                        }
                        break;
                    }
                    // Rare, and refused by the caller: serde_json reads it.
                    "nbf" => return None,
                    _ => {
                        // Ignored, as serde_json ignores unknown claims.
                        match self.peek()? {
                            b'"' => drop(self.plain_string()?),
                            _ => drop(self.plain_integer()?),
                        }
                        self.skip_space();
                        if self.next_member()? {
                            continue;
                        }
                        break;
                    }
                };
                if slot.is_some() {
                    return None; // duplicate: serde_json reports it
                }
                *slot = Some(Cow::Borrowed(self.plain_string()?));
                self.skip_space();
                if !self.next_member()? {
                    break;
                }
            }
        }
        self.skip_space();
        (self.at == self.text.len()).then_some(claims)
    }

    /// Exactly what `claims_json` writes (this crate's own tokens): its
    /// members in its order, no spaces. Each member is then a fixed prefix
    /// and a string up to the next quote, so reading one costs a comparison
    /// and a few bit operations, where [`Self::members`] has to find out
    /// what comes next at every step.
    fn our_layout(mut self) -> Option<RawClaims<'a>> {
        // A required member missing or malformed alike: not our layout.
        let version = self.string_member("{\"version\":").flatten()?;
        let token_type = self.string_member(",\"type\":").flatten()?;
        let actor_type = self.string_member(",\"actorType\":").flatten()?;
        let actor_id = self.string_member(",\"actorId\":").flatten()?;
        let sub = self.string_member(",\"sub\":")?;
        let jti = self.string_member(",\"jti\":")?;
        let iss = self.string_member(",\"iss\":")?;
        let exp = if self.skip_key(",\"exp\":")? {
            Some(self.plain_integer()?)
        } else {
            None
        };
        (self.rest() == "}").then(|| RawClaims {
            version: Some(version.into()),
            token_type: Some(token_type.into()),
            actor_type: Some(actor_type.into()),
            actor_id: Some(actor_id.into()),
            sub: sub.map(Cow::Borrowed),
            jti: jti.map(Cow::Borrowed),
            iss: iss.map(Cow::Borrowed),
            exp,
            nbf: false,
        })
    }

    #[inline(always)]
    fn rest(&self) -> &'a str {
        self.text.get(self.at..).unwrap_or_default()
    }

    /// The string value of the next member, if the text goes on with
    /// `prefix` (see [`Self::skip_key`]); `Some(None)` if it does not.
    #[inline(always)]
    fn string_member(&mut self, prefix: &str) -> Option<Option<&'a str>> {
        if !self.skip_key(prefix)? {
            return Some(None);
        }
        self.plain_string().map(Some)
    }

    /// Moves past `prefix` (what comes before a member's value: a comma or
    /// brace and the quoted key and colon), taking the key's two quotes, if
    /// the text goes on with it.
    #[inline(always)] // so each `prefix` is compared as the constant it is
    fn skip_key(&mut self, prefix: &str) -> Option<bool> {
        if !self.rest().starts_with(prefix) {
            return Some(false);
        }
        self.next_quote()?;
        self.next_quote()?;
        self.at += prefix.len();
        Some(true)
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    #[inline(always)]
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// After a member: `true` at `,` (then at the next key's quote), `false` at `}`.
    #[inline(always)]
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
    #[inline(always)]
    fn plain_string(&mut self) -> Option<&'a str> {
        // The next quote is at `at` exactly when a string starts there.
        let open = self.next_quote()?;
        if open != self.at {
            return None;
        }
        let end = self.next_quote()?;
        self.at = end + 1;
        self.text.get(open + 1..end)
    }

    /// The first quote not yet read. Taken from a register-held word rather
    /// than searched for from `at`: the position of every string's end no
    /// longer waits on the scan up to its start.
    #[inline(always)]
    fn next_quote(&mut self) -> Option<usize> {
        while self.bits == 0 {
            self.word += 1;
            self.bits = *self.quotes.get(self.word)?;
        }
        let at = self.word * 64 + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(at)
    }

    /// A non-negative integer without a leading zero, fraction or exponent,
    /// small enough that it cannot overflow.
    #[inline(always)]
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

    /// The claims of a plain `payload`, if they are laid out as ours are.
    fn our_layout(payload: &[u8]) -> Option<RawClaims<'_>> {
        let quotes = plain_quotes(payload).expect("plain");
        Scanner::new(payload, &quotes).expect("UTF-8").our_layout()
    }

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

    #[test]
    fn our_own_layout_reads_as_serde_reads_it() {
        use super::super::{claims_json, ClaimsView};
        use crate::model::AccessTokenType;
        // Every combination of the optional claims, as `claims_json` writes them.
        for present in 0..16 {
            let has = |bit: u32| present & (1 << bit) != 0;
            let view = ClaimsView {
                version: "2",
                token_type: AccessTokenType::Personal,
                actor_type: "USER",
                actor_id: "jdoe@example.com",
                sub: has(0).then_some("jdoe@example.com"),
                jti: has(1).then_some("0b1c6b6e-5d3c-4c56-8a5d-0d6c0b0e8e59"),
                iss: has(2).then_some("datahub-metadata-service"),
                exp: has(3).then_some(1_700_000_000),
            };
            let json = claims_json(&view);
            let expected: RawClaims<'_> = serde_json::from_slice(&json).unwrap();
            let ours = our_layout(&json);
            assert_eq!(
                ours.as_ref(),
                Some(&expected),
                "{}",
                String::from_utf8_lossy(&json)
            );
            // Any other spacing or order is read in full, to the same result.
            let spaced = String::from_utf8_lossy(&json).replace(':', ": ");
            assert_eq!(our_layout(spaced.as_bytes()), None);
            assert_eq!(read_plain(spaced.as_bytes()), Some(expected));
        }
        // Near misses of the layout: a member more, one twice, an exp that is
        // not an integer, text after the object.
        for json in [
            r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"a","foo":"b"}"#,
            r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"a","sub":"b","sub":"c"}"#,
            r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"a","exp":1.5}"#,
            r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"a"} "#,
            r#"{"version":"2","type":"PERSONAL","actorType":"USER","actorId":"a"}}"#,
        ] {
            assert_eq!(our_layout(json.as_bytes()), None, "{json}");
            assert_eq!(
                read(json.as_bytes()).ok(),
                serde_json::from_str(json).ok(),
                "{json}"
            );
        }
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
            "nbf",
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
