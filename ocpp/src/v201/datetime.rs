//! The OCPP `dateTime` type: an RFC 3339 timestamp.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// An OCPP date-time (schema `"format": "date-time"`).
///
/// Parsing accepts exactly what the reference validator (jsonschema with
/// `rfc3339-validator`) accepts: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, year
/// 0001..=9999, a real calendar day, hour 00..=23, no leap second, `T` and `Z`
/// in either case, and (a quirk of Python's `$`) one optional trailing `\n`.
/// Fractions beyond nanoseconds are truncated.
///
/// Serialisation is always in UTC with a `Z` suffix and at most three
/// fraction digits (milliseconds, truncated; OCPP-J asks that peers not be sent
/// finer precision), only as many as needed. Equality compares instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DateTime(OffsetDateTime);

/// Why a string is not an OCPP date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 date-time: {0}")]
pub struct DateTimeError(&'static str);

impl DateTime {
    /// The current time, from the system clock. Prefer an injected clock in
    /// code that needs to be tested.
    pub fn now_utc() -> Self {
        DateTime(OffsetDateTime::now_utc())
    }

    /// Parses an RFC 3339 timestamp (see the type docs for the exact grammar).
    pub fn parse(s: &str) -> Result<Self, DateTimeError> {
        parse(s).map(DateTime)
    }

    /// The wrapped `time` value, with the offset it was parsed with.
    pub fn into_inner(self) -> OffsetDateTime {
        self.0
    }

    /// A reference to the wrapped `time` value.
    pub fn as_offset_date_time(&self) -> &OffsetDateTime {
        &self.0
    }
}

impl From<OffsetDateTime> for DateTime {
    fn from(t: OffsetDateTime) -> Self {
        DateTime(t)
    }
}

impl From<DateTime> for OffsetDateTime {
    fn from(t: DateTime) -> Self {
        t.0
    }
}

impl std::str::FromStr for DateTime {
    type Err = DateTimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse(s)
    }
}

impl fmt::Display for DateTime {
    /// RFC 3339 in UTC (`2024-01-02T03:04:05.5Z`).
    ///
    /// An instant whose UTC year falls outside 0001..=9999 keeps its own
    /// offset when that makes it representable, and is otherwise clamped to
    /// the nearest representable instant, so the output always parses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let utc = self.0.checked_to_offset(UtcOffset::UTC);
        match utc {
            Some(u) if (1..=9999).contains(&u.year()) => write_rfc3339(f, u),
            _ if (1..=9999).contains(&self.0.year()) => write_rfc3339(f, self.0),
            _ if self.0.year() < 1 => f.write_str("0001-01-01T00:00:00Z"),
            _ => f.write_str("9999-12-31T23:59:59.999Z"),
        }
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DateTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date-time string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DateTime, E> {
                DateTime::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

fn write_rfc3339(f: &mut fmt::Formatter<'_>, t: OffsetDateTime) -> fmt::Result {
    write!(
        f,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )?;
    let millis = t.millisecond();
    if millis != 0 {
        let digits = format!("{millis:03}");
        write!(f, ".{}", digits.trim_end_matches('0'))?;
    }
    let (h, m, _) = t.offset().as_hms();
    if h == 0 && m == 0 {
        f.write_str("Z")
    } else {
        let sign = if h < 0 || m < 0 { '-' } else { '+' };
        write!(f, "{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
    }
}

/// A byte cursor over the ASCII grammar.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Result<u32, DateTimeError> {
        let mut value = 0u32;
        for _ in 0..n {
            let b = self.bytes.get(self.pos).copied().unwrap_or(0);
            if !b.is_ascii_digit() {
                return Err(DateTimeError("expected a digit"));
            }
            value = value * 10 + u32::from(b - b'0');
            self.pos += 1;
        }
        Ok(value)
    }

    fn expect(&mut self, what: &[u8]) -> Result<u8, DateTimeError> {
        match self.bytes.get(self.pos) {
            Some(b) if what.contains(b) => {
                self.pos += 1;
                Ok(*b)
            }
            _ => Err(DateTimeError("unexpected character")),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
}

fn parse(s: &str) -> Result<OffsetDateTime, DateTimeError> {
    // Python's `$` also matches just before a final newline.
    let s = s.strip_suffix('\n').unwrap_or(s);
    let mut c = Cursor { bytes: s.as_bytes(), pos: 0 };
    let year = c.digits(4)?;
    c.expect(b"-")?;
    let month = c.digits(2)?;
    c.expect(b"-")?;
    let day = c.digits(2)?;
    c.expect(b"Tt")?;
    let hour = c.digits(2)?;
    c.expect(b":")?;
    let minute = c.digits(2)?;
    c.expect(b":")?;
    let second = c.digits(2)?;
    let mut nanos = 0u32;
    if c.peek() == Some(b'.') {
        c.pos += 1;
        let mut count = 0usize;
        while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
            if count < 9 {
                nanos = nanos * 10 + u32::from(b - b'0');
            }
            count += 1;
            c.pos += 1;
        }
        if count == 0 {
            return Err(DateTimeError("empty fraction"));
        }
        for _ in count..9 {
            nanos *= 10;
        }
    }
    let offset_seconds = match c.expect(b"Zz+-")? {
        b'Z' | b'z' => 0i32,
        sign => {
            let h = c.digits(2)?;
            c.expect(b":")?;
            let m = c.digits(2)?;
            if h > 23 || m > 59 {
                return Err(DateTimeError("offset out of range"));
            }
            let secs = i32::try_from(h * 3600 + m * 60).map_err(|_| DateTimeError("offset"))?;
            if sign == b'-' { -secs } else { secs }
        }
    };
    if c.pos != c.bytes.len() {
        return Err(DateTimeError("trailing characters"));
    }
    if year == 0 {
        return Err(DateTimeError("year 0"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(DateTimeError("time out of range"));
    }
    let month =
        u8::try_from(month).ok().and_then(|m| Month::try_from(m).ok()).ok_or(DateTimeError("month out of range"))?;
    let year = i32::try_from(year).map_err(|_| DateTimeError("year"))?;
    let day = u8::try_from(day).map_err(|_| DateTimeError("day"))?;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| DateTimeError("no such day"))?;
    let to_u8 = |v: u32| u8::try_from(v).map_err(|_| DateTimeError("time"));
    let time = Time::from_hms_nano(to_u8(hour)?, to_u8(minute)?, to_u8(second)?, nanos)
        .map_err(|_| DateTimeError("time out of range"))?;
    let offset = UtcOffset::from_whole_seconds(offset_seconds).map_err(|_| DateTimeError("offset"))?;
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_rfc3339_validator_accepts() {
        for s in [
            "2024-01-02T03:04:05Z",
            "2024-02-29T23:59:59.123456+05:30",
            "2024-01-01t00:00:00z",
            "2024-01-01T00:00:00Z\n",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999999999-23:59",
        ] {
            assert!(DateTime::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_the_rest() {
        for s in [
            "",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:60:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00Z\n\n",
            "2024-1-01T00:00:00Z",
            "+2024-01-01T00:00:00Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert!(DateTime::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn serialises_in_utc() {
        let t = DateTime::parse("2024-02-29T23:59:59.120+05:30").unwrap();
        assert_eq!(t.to_string(), "2024-02-29T18:29:59.12Z");
        let fine = DateTime::parse("2024-02-29T18:29:59.123999999Z").unwrap();
        assert_eq!(fine.to_string(), "2024-02-29T18:29:59.123Z", "truncated to milliseconds");
        let sub_milli = DateTime::parse("2024-02-29T18:29:59.000999Z").unwrap();
        assert_eq!(sub_milli.to_string(), "2024-02-29T18:29:59Z");
        let t = DateTime::parse("2024-01-01T00:00:00-00:00").unwrap();
        assert_eq!(t.to_string(), "2024-01-01T00:00:00Z");
        assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!("2024-01-01T00:00:00Z"));
        // UTC would be year 0: the original offset is kept.
        let t = DateTime::parse("0001-01-01T00:30:00+01:00").unwrap();
        assert_eq!(t.to_string(), "0001-01-01T00:30:00+01:00");
        assert!(DateTime::parse(&t.to_string()).is_ok());
        let far = OffsetDateTime::from_unix_timestamp(-70_000_000_000).unwrap();
        assert_eq!(DateTime::from(far).to_string(), "0001-01-01T00:00:00Z");
        let t: DateTime = OffsetDateTime::UNIX_EPOCH.into();
        assert_eq!(t.into_inner(), OffsetDateTime::UNIX_EPOCH);
        assert_eq!(t.to_string(), "1970-01-01T00:00:00Z");
    }
}
