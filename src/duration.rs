//! Token lifetimes: DataHub's `AccessTokenDuration` enum, ISO-8601
//! `durationIso` values, and the policy of which ones a deployment allows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const HOUR_MS: i64 = 60 * 60 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// DataHub's fixed token lifetimes (GraphQL enum `AccessTokenDuration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessTokenDuration {
    /// One hour.
    OneHour,
    /// 24 hours.
    OneDay,
    /// 7 days.
    OneWeek,
    /// 30 days.
    OneMonth,
    /// 90 days.
    ThreeMonths,
    /// 180 days.
    SixMonths,
    /// 365 days.
    OneYear,
    /// Never expires (only where the policy allows it).
    NoExpiry,
}

impl AccessTokenDuration {
    /// Every value, in DataHub's order.
    pub const ALL: [AccessTokenDuration; 8] = [
        Self::OneHour,
        Self::OneDay,
        Self::OneWeek,
        Self::OneMonth,
        Self::ThreeMonths,
        Self::SixMonths,
        Self::OneYear,
        Self::NoExpiry,
    ];

    /// The lifetime in milliseconds, `None` for [`NoExpiry`](Self::NoExpiry).
    pub fn millis(self) -> Option<i64> {
        Some(match self {
            Self::OneHour => HOUR_MS,
            Self::OneDay => DAY_MS,
            Self::OneWeek => 7 * DAY_MS,
            Self::OneMonth => 30 * DAY_MS,
            Self::ThreeMonths => 90 * DAY_MS,
            Self::SixMonths => 180 * DAY_MS,
            Self::OneYear => 365 * DAY_MS,
            Self::NoExpiry => return None,
        })
    }

    /// DataHub's name for the value, e.g. `ONE_WEEK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneHour => "ONE_HOUR",
            Self::OneDay => "ONE_DAY",
            Self::OneWeek => "ONE_WEEK",
            Self::OneMonth => "ONE_MONTH",
            Self::ThreeMonths => "THREE_MONTHS",
            Self::SixMonths => "SIX_MONTHS",
            Self::OneYear => "ONE_YEAR",
            Self::NoExpiry => "NO_EXPIRY",
        }
    }

    fn from_millis(millis: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.millis() == Some(millis))
    }
}

impl fmt::Display for AccessTokenDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccessTokenDuration {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|d| d.as_str()).collect();
            Error::invalid_input(format!(
                "unknown duration {s:?}; expected one of {}",
                names.join(", ")
            ))
        })
    }
}

/// A positive ISO-8601 duration such as `P30D` or `PT1H`, as DataHub's
/// `durationIso` reads it: a year is 365 days, a month 30 days, a week 7 days.
///
/// Components must appear in the standard order (`PnYnMnWnDTnHnMnS`) and
/// be whole numbers, except seconds, which may have a fraction (`PT0.5S`),
/// rounded to the millisecond as DataHub rounds it. Two values are equal
/// when they last equally long, so `P1W == P7D`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IsoDuration {
    text: String,
    millis: i64,
}

impl IsoDuration {
    /// Parses `text` (case-insensitive, surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim().to_ascii_uppercase();
        let millis = parse_iso_millis(&text).map_err(|why| {
            Error::invalid_input(format!(
                "invalid ISO-8601 duration {text:?}: {why} (examples: PT1H, P30D)"
            ))
        })?;
        Ok(IsoDuration { text, millis })
    }

    /// The length in milliseconds (always positive).
    pub fn millis(&self) -> i64 {
        self.millis
    }

    /// The duration as written (upper-cased).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<AccessTokenDuration> for Option<IsoDuration> {
    fn from(d: AccessTokenDuration) -> Self {
        let millis = d.millis()?;
        Some(IsoDuration {
            text: iso_text(millis),
            millis,
        })
    }
}

/// `millis` as ISO-8601 in its largest whole unit (days, hours, seconds);
/// anything finer, for a message only, in milliseconds.
fn iso_text(millis: i64) -> String {
    match millis {
        ms if ms % DAY_MS == 0 => format!("P{}D", ms / DAY_MS),
        ms if ms % HOUR_MS == 0 => format!("PT{}H", ms / HOUR_MS),
        ms if ms % 1000 == 0 => format!("PT{}S", ms / 1000),
        ms => format!("{ms} ms"),
    }
}

/// A lifetime for a message: DataHub's name if it has one, else ISO-8601.
fn describe_millis(ms: i64) -> String {
    match AccessTokenDuration::from_millis(ms) {
        Some(name) => name.to_string(),
        None => iso_text(ms),
    }
}

fn parse_iso_millis(text: &str) -> std::result::Result<i64, String> {
    let body = text.strip_prefix('P').ok_or("must start with P")?;
    if body.is_empty() || body == "T" {
        return Err("has no components".into());
    }
    // (designator, milliseconds per unit), in the order they must appear.
    const DATE: [(char, i64); 4] = [
        ('Y', 365 * DAY_MS),
        ('M', 30 * DAY_MS),
        ('W', 7 * DAY_MS),
        ('D', DAY_MS),
    ];
    const TIME: [(char, i64); 3] = [('H', HOUR_MS), ('M', 60_000), ('S', 1000)];
    let (date, time) = match body.split_once('T') {
        Some((_, "")) => return Err("has nothing after T".into()),
        Some((date, time)) => (date, time),
        None => (body, ""),
    };
    let mut total: i64 = 0;
    for (part, units) in [(date, &DATE[..]), (time, &TIME[..])] {
        let mut next_unit = 0;
        let mut rest = part;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("expected a number at {rest:?}"));
            }
            // DataHub's grammar allows a fraction on seconds only (`PT0.5S`).
            let number = match rest[digits..].strip_prefix('.') {
                Some(fraction) => {
                    let len = fraction
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(fraction.len());
                    if len == 0 || !fraction[len..].starts_with('S') {
                        return Err("only seconds may have a fraction, as in PT0.5S".into());
                    }
                    digits + 1 + len
                }
                None => digits,
            };
            let designator = rest[number..].chars().next().ok_or("a number lacks its unit")?;
            let position = units[next_unit..]
                .iter()
                .position(|(d, _)| *d == designator)
                .ok_or_else(|| format!("unexpected or out-of-order unit {designator:?}"))?;
            let unit_ms = units[next_unit + position].1;
            next_unit += position + 1;
            let ms = if number == digits {
                let count: i64 = rest[..digits].parse().map_err(|_| "number too large")?;
                count.checked_mul(unit_ms)
            } else {
                // As DataHub: `Math.round(seconds * 1000)` in doubles.
                let seconds: f64 = rest[..number].parse().map_err(|_| "not a number")?;
                let ms = (seconds * 1000.0).round();
                (ms < i64::MAX as f64).then_some(ms as i64)
            };
            total = ms.and_then(|ms| total.checked_add(ms)).ok_or("too long")?;
            rest = &rest[number + 1..];
        }
    }
    if total <= 0 {
        return Err("must be longer than zero".into());
    }
    Ok(total)
}

impl PartialEq for IsoDuration {
    fn eq(&self, other: &Self) -> bool {
        self.millis == other.millis
    }
}
impl Eq for IsoDuration {}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for IsoDuration {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl TryFrom<String> for IsoDuration {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<IsoDuration> for String {
    fn from(d: IsoDuration) -> String {
        d.text
    }
}

/// Which lifetimes a deployment allows (DataHub's `ACCESS_TOKEN_ALLOW_NO_EXPIRY`
/// and `ACCESS_TOKEN_ALLOWED_DURATIONS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationPolicy {
    allow_no_expiry: bool,
    allowed: Vec<IsoDuration>,
}

/// DataHub's default `ACCESS_TOKEN_ALLOWED_DURATIONS`.
pub const DEFAULT_ALLOWED_DURATIONS: &str = "PT1H,P1D,P7D,P30D,P90D,P180D,P365D";

impl Default for DurationPolicy {
    /// DataHub's defaults: the seven fixed durations, no never-expiring tokens.
    fn default() -> Self {
        Self::parse(DEFAULT_ALLOWED_DURATIONS, false).expect("the default durations parse")
    }
}

impl DurationPolicy {
    /// A policy allowing exactly `allowed` (non-empty) and, if
    /// `allow_no_expiry`, never-expiring tokens.
    pub fn new(allowed: Vec<IsoDuration>, allow_no_expiry: bool) -> Result<Self> {
        if allowed.is_empty() {
            return Err(Error::Config("the list of allowed durations is empty".into()));
        }
        Ok(DurationPolicy {
            allow_no_expiry,
            allowed,
        })
    }

    /// Parses a comma-separated list such as [`DEFAULT_ALLOWED_DURATIONS`].
    /// An empty item (`P1D,,P7D`, a trailing comma) is refused, as DataHub
    /// refuses it: it is more likely a slip than a meaning.
    pub fn parse(allowed: &str, allow_no_expiry: bool) -> Result<Self> {
        let allowed = allowed
            .split(',')
            .enumerate()
            .map(|(n, item)| match item.trim() {
                "" => Err(Error::invalid_input(format!(
                    "item {} of {allowed:?} is empty",
                    n + 1
                ))),
                item => IsoDuration::parse(item),
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|e| Error::Config(format!("allowed durations: {e}")))?;
        Self::new(allowed, allow_no_expiry)
    }

    /// Whether never-expiring tokens may be created.
    pub fn allow_no_expiry(&self) -> bool {
        self.allow_no_expiry
    }

    /// The allowed lifetimes.
    pub fn allowed(&self) -> &[IsoDuration] {
        &self.allowed
    }

    /// Resolves a create (or rotate) request's `duration` / `durationIso` pair
    /// (exactly one must be given) to a lifetime in milliseconds, `None`
    /// meaning never.
    pub fn resolve(
        &self,
        duration: Option<AccessTokenDuration>,
        duration_iso: Option<&str>,
    ) -> Result<Option<i64>> {
        let requested: Option<IsoDuration> = match (duration, duration_iso) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_input(
                    "give either duration or durationIso, not both",
                ))
            }
            (None, None) => {
                return Err(Error::invalid_input(
                    "a duration is required: give duration or durationIso",
                ))
            }
            (Some(d), None) => match d.millis() {
                // The common case, without writing out the ISO text that
                // only an error message shows.
                Some(ms) if self.allows(ms) => return Ok(Some(ms)),
                _ => d.into(),
            },
            (None, Some(iso)) => Some(IsoDuration::parse(iso)?),
        };
        match requested {
            None if self.allow_no_expiry => Ok(None),
            None => Err(Error::invalid_input(format!(
                "NO_EXPIRY is not allowed: never-expiring tokens are disabled; allowed durations: {}",
                self.describe_allowed()
            ))),
            Some(d) if self.allows(d.millis()) => Ok(Some(d.millis())),
            Some(d) => Err(Error::invalid_input(format!(
                "duration {d} is not allowed; allowed durations: {}",
                self.describe_allowed()
            ))),
        }
    }

    /// Checks that a new token may last `lifetime_ms` (`None`: never
    /// expires) without being asked for a duration, as a rotation keeping
    /// the old token's lifetime is: the policy may have narrowed since.
    pub(crate) fn check_kept_lifetime(&self, lifetime_ms: Option<i64>) -> Result<Option<i64>> {
        match lifetime_ms {
            None if self.allow_no_expiry => Ok(None),
            None => Err(Error::invalid_input(
                "the token never expires and never-expiring tokens are no longer allowed: \
                 give a duration for the new token",
            )),
            Some(ms) if self.allows(ms) => Ok(Some(ms)),
            Some(ms) => Err(Error::invalid_input(format!(
                "the token's lifetime ({}) is no longer allowed: give a duration for the new token; \
                 allowed durations: {}",
                describe_millis(ms),
                self.describe_allowed()
            ))),
        }
    }

    /// Whether a lifetime of `ms` is one of the allowed durations.
    fn allows(&self, ms: i64) -> bool {
        self.allowed.iter().any(|a| a.millis == ms)
    }

    fn describe_allowed(&self) -> String {
        let mut names: Vec<String> = self
            .allowed
            .iter()
            .map(|d| match AccessTokenDuration::from_millis(d.millis()) {
                Some(name) => format!("{name} ({d})"),
                None => d.to_string(),
            })
            .collect();
        if self.allow_no_expiry {
            names.push("NO_EXPIRY".into());
        }
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_and_names() {
        use AccessTokenDuration::*;
        for (d, ms) in [
            (OneHour, Some(3_600_000)),
            (OneDay, Some(86_400_000)),
            (OneWeek, Some(604_800_000)),
            (OneMonth, Some(2_592_000_000)),
            (ThreeMonths, Some(7_776_000_000)),
            (SixMonths, Some(15_552_000_000)),
            (OneYear, Some(31_536_000_000)),
            (NoExpiry, None),
        ] {
            assert_eq!(d.millis(), ms, "{d}");
        }
        for d in AccessTokenDuration::ALL {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(d.as_str().parse::<AccessTokenDuration>().unwrap(), d);
        }
        assert!("ONE_FORTNIGHT".parse::<AccessTokenDuration>().is_err());
    }

    #[test]
    fn default_policy_is_datahubs() {
        let policy = DurationPolicy::default();
        let allowed: Vec<_> = policy.allowed().iter().map(IsoDuration::as_str).collect();
        assert_eq!(allowed, ["PT1H", "P1D", "P7D", "P30D", "P90D", "P180D", "P365D"]);
        assert!(!policy.allow_no_expiry());
    }

    #[test]
    fn iso_parsing() {
        let ms = |s: &str| IsoDuration::parse(s).map(|d| d.millis());
        assert_eq!(ms("PT1H").unwrap(), HOUR_MS);
        assert_eq!(ms("p30d").unwrap(), 30 * DAY_MS);
        assert_eq!(ms("P1Y").unwrap(), 365 * DAY_MS);
        assert_eq!(ms("P1M").unwrap(), 30 * DAY_MS);
        assert_eq!(ms("PT1M").unwrap(), 60_000);
        assert_eq!(ms("P1W").unwrap(), 7 * DAY_MS);
        assert_eq!(
            ms("P1DT2H3M4S").unwrap(),
            DAY_MS + 2 * HOUR_MS + 3 * 60_000 + 4000
        );
        for bad in [
            "",
            "P",
            "PT",
            "1D",
            "P1",
            "PD",
            "P1D2",
            "PT1D",
            "P1H",
            "P1D1Y",
            "P0D",
            "P-1D",
            "P1.5D",
            "P99999999999999999999D",
            "P9999999999999Y",
        ] {
            assert!(IsoDuration::parse(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(
            IsoDuration::parse("P1W").unwrap(),
            IsoDuration::parse("P7D").unwrap()
        );
    }

    #[test]
    fn seconds_may_have_a_fraction_as_in_datahub() {
        // DataHub's IsoDurationParser: `(\d+(?:\.\d+)?)S`, Math.round(seconds * 1000).
        let ms = |s: &str| IsoDuration::parse(s).map(|d| d.millis());
        assert_eq!(ms("PT1.5S").unwrap(), 1500);
        assert_eq!(ms("PT3600.000S").unwrap(), HOUR_MS);
        assert_eq!(ms("pt0.0005s").unwrap(), 1, "half a millisecond rounds up");
        assert_eq!(ms("P1DT1M0.25S").unwrap(), DAY_MS + 60_000 + 250);
        for bad in [
            "PT0.0004S",
            "PT1.S",
            "PT.5S",
            "PT1.5H",
            "P1.5S",
            "PT1.5.5S",
            "PT1,5S",
        ] {
            assert!(IsoDuration::parse(bad).is_err(), "{bad:?} should fail");
        }
        let err = IsoDuration::parse("PT1.5M").unwrap_err().to_string();
        assert!(err.contains("only seconds may have a fraction"), "{err}");
        // So a lifetime written in seconds meets the allowed list as in DataHub.
        assert_eq!(
            DurationPolicy::default()
                .resolve(None, Some("PT3600.0S"))
                .unwrap(),
            Some(HOUR_MS)
        );
    }

    #[test]
    fn policy_resolution() {
        let policy = DurationPolicy::default();
        assert_eq!(
            policy.resolve(Some(AccessTokenDuration::OneHour), None).unwrap(),
            Some(HOUR_MS)
        );
        assert_eq!(policy.resolve(None, Some("P1W")).unwrap(), Some(7 * DAY_MS));
        let err = policy.resolve(None, Some("P2D")).unwrap_err().to_string();
        assert!(
            err.contains("P2D is not allowed") && err.contains("ONE_WEEK (P7D)"),
            "{err}"
        );
        let err = policy
            .resolve(Some(AccessTokenDuration::NoExpiry), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NO_EXPIRY is not allowed"), "{err}");
        assert!(policy.resolve(None, None).is_err());
        assert!(policy
            .resolve(Some(AccessTokenDuration::OneDay), Some("P1D"))
            .is_err());
        let open = DurationPolicy::parse("P2D", true).unwrap();
        assert_eq!(
            open.resolve(Some(AccessTokenDuration::NoExpiry), None).unwrap(),
            None
        );
        assert_eq!(open.resolve(None, Some("P2D")).unwrap(), Some(2 * DAY_MS));
        assert!(DurationPolicy::parse(" , ", false).is_err());
        for (list, empty_item) in [("P1D,,P7D", 2), ("P1D,", 2), (",P1D", 1), ("", 1)] {
            let err = DurationPolicy::parse(list, false).unwrap_err().to_string();
            assert!(
                err.contains(&format!("item {empty_item} of {list:?} is empty")),
                "{err}"
            );
        }
        assert_eq!(
            DurationPolicy::parse(" P1D , PT1H ", false)
                .unwrap()
                .allowed()
                .len(),
            2
        );
        assert!(DurationPolicy::parse("P1D,bogus", false).is_err());
    }

    #[test]
    fn kept_lifetimes_must_still_be_allowed() {
        let policy = DurationPolicy::parse("PT1H,P30D", false).unwrap();
        assert_eq!(policy.check_kept_lifetime(Some(HOUR_MS)).unwrap(), Some(HOUR_MS));
        for (lifetime, named) in [(365 * DAY_MS, "ONE_YEAR"), (2 * DAY_MS, "P2D"), (90_000, "PT90S")] {
            let err = policy
                .check_kept_lifetime(Some(lifetime))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("lifetime ({named}) is no longer allowed")),
                "{err}"
            );
            assert!(err.contains("ONE_HOUR (PT1H), ONE_MONTH (P30D)"), "{err}");
        }
        let err = policy.check_kept_lifetime(None).unwrap_err().to_string();
        assert!(
            err.contains("never-expiring tokens are no longer allowed"),
            "{err}"
        );
        let open = DurationPolicy::parse("P1D", true).unwrap();
        assert_eq!(open.check_kept_lifetime(None).unwrap(), None);
    }
}
