//! A calendar day, the finest unit of time tally ever writes down.
//!
//! Serialized as `YYYY-MM-DD`. Reports carry only the first day of their week; nothing finer
//! than a day exists anywhere in tally's files.

use std::fmt;
use std::str::FromStr;

use time::{Date, Month};

/// A calendar day (proleptic Gregorian, no time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub Date);

impl Day {
    /// Days since 1970-01-01 (negative before).
    pub fn to_unix_days(self) -> i64 {
        i64::from(self.0.to_julian_day()) - i64::from(UNIX_EPOCH_JULIAN_DAY)
    }

    /// The day `days` after 1970-01-01. Returns `None` outside the supported range.
    pub fn from_unix_days(days: i64) -> Option<Day> {
        let julian = i32::try_from(days.checked_add(i64::from(UNIX_EPOCH_JULIAN_DAY))?).ok()?;
        Date::from_julian_day(julian).ok().map(Day)
    }

    /// This day plus `days` (which may be negative). `None` on overflow.
    pub fn plus_days(self, days: i64) -> Option<Day> {
        Day::from_unix_days(self.to_unix_days().checked_add(days)?)
    }

    /// Number of days from `earlier` to `self` (negative if `earlier` is later).
    pub fn days_since(self, earlier: Day) -> i64 {
        self.to_unix_days() - earlier.to_unix_days()
    }
}

const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// Error for a string that is not a `YYYY-MM-DD` day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a day in YYYY-MM-DD form: {0:?}")]
pub struct DayParseError(pub String);

impl FromStr for Day {
    type Err = DayParseError;
    /// Exactly `YYYY-MM-DD`, ten ASCII bytes, a real calendar day. Hand-written rather than
    /// `time`'s format-description parser: days are parsed and written on the shim's hot path,
    /// where every page of code touched costs a page fault.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || DayParseError(s.chars().take(32).collect());
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(error());
        }
        let number = |digits: &[u8]| {
            digits.iter().try_fold(0u16, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
            })
        };
        let (Some(year), Some(month), Some(day)) =
            (number(&b[0..4]), number(&b[5..7]), number(&b[8..10]))
        else {
            return Err(error());
        };
        let month = u8::try_from(month)
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .ok_or_else(error)?;
        let day = u8::try_from(day).map_err(|_| error())?;
        Date::from_calendar_date(i32::from(year), month, day)
            .map(Day)
            .map_err(|_| error())
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.0.to_calendar_date();
        if let Ok(year @ 0..=9999) = u16::try_from(year) {
            // Every day tally meets: ten ASCII bytes put together directly, without the
            // formatting machinery (the shim names a counter file on every run).
            let digit = |n: u16, place: u16| b'0' + (n / place % 10) as u8;
            let (month, day) = (u16::from(u8::from(month)), u16::from(day));
            let text = [
                digit(year, 1000),
                digit(year, 100),
                digit(year, 10),
                digit(year, 1),
                b'-',
                digit(month, 10),
                digit(month, 1),
                b'-',
                digit(day, 10),
                digit(day, 1),
            ];
            return f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?);
        }
        let sign = if year < 0 { "-" } else { "" };
        write!(
            f,
            "{sign}{:04}-{:02}-{:02}",
            year.unsigned_abs(),
            u8::from(month),
            day
        )
    }
}

#[cfg(feature = "wire")]
impl serde::Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "wire")]
impl<'de> serde::Deserialize<'de> for Day {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
impl schemars::JsonSchema for Day {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Day".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A calendar day, YYYY-MM-DD.",
            "type": "string",
            "format": "date",
            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_counts_days() {
        let d: Day = "2026-11-24".parse().unwrap();
        assert_eq!(d.to_string(), "2026-11-24");
        assert_eq!(Day::from_unix_days(0).unwrap().to_string(), "1970-01-01");
        assert_eq!(d.plus_days(7).unwrap().to_string(), "2026-12-01");
        assert_eq!(d.plus_days(7).unwrap().days_since(d), 7);
    }

    /// The hand-written text form agrees with `time`'s `[year]-[month]-[day]` on every day
    /// of four centuries and at the ends of the range.
    #[test]
    fn text_form_matches_time_crate() {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let first: Day = "1900-01-01".parse().unwrap();
        let extremes = ["0000-01-01", "0001-12-31", "2024-02-29", "9999-12-31"]
            .map(|s| s.parse::<Day>().unwrap());
        for day in (0..146_097)
            .map(|n| first.plus_days(n).unwrap())
            .chain(extremes)
        {
            let text = day.0.format(format).unwrap();
            assert_eq!(day.to_string(), text);
            assert_eq!(text.parse::<Day>().unwrap(), day);
        }
    }

    #[test]
    fn rejects_non_days() {
        for s in [
            "",
            "2026-13-01",
            "2026-02-30",
            "26-11-24",
            "2026-11-24T00:00",
            "+02026-11-24",
            "+026-11-24",
            "2026-1a-24",
            "2026-00-10",
            "2026-11-00",
            "2023-02-29",
            "2026/11/24",
            "２０２６-11-2",
        ] {
            assert!(s.parse::<Day>().is_err(), "{s}");
        }
    }
}
