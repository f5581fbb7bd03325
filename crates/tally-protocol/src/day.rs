//! A calendar day, the finest unit of time tally ever writes down.
//!
//! Serialized as `YYYY-MM-DD`. Reports carry only the first day of their week; nothing finer
//! than a day exists anywhere in tally's files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, format_description::BorrowedFormatItem, macros::format_description};

const FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

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
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Exactly ten bytes: `time` would also accept some longer years, which no report needs.
        if s.len() != 10 {
            return Err(DayParseError(s.chars().take(32).collect()));
        }
        Date::parse(s, FORMAT)
            .map(Day)
            .map_err(|_| DayParseError(s.chars().take(32).collect()))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.format(FORMAT).map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
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

    #[test]
    fn rejects_non_days() {
        for s in [
            "",
            "2026-13-01",
            "2026-02-30",
            "26-11-24",
            "2026-11-24T00:00",
            "+02026-11-24",
        ] {
            assert!(s.parse::<Day>().is_err(), "{s}");
        }
    }
}
