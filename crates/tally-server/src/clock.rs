//! Today's date as the server sees it, with the `TALLY_NOW` override tests use.
//!
//! The server needs only the calendar day (to decide whether a week has ended and is not too
//! old). `TALLY_NOW` takes `YYYY-MM-DD` or an RFC 3339 timestamp; the timestamp's UTC date is
//! used. Tests move time with this variable instead of sleeping.

use anyhow::bail;
use tally_protocol::Day;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// The environment variable that pins the server's clock.
pub const NOW_ENV: &str = tally_env::TALLY_NOW;

/// Where "today" comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock (UTC).
    System,
    /// A fixed day (from `TALLY_NOW`, or set by a test).
    Fixed(Day),
}

impl Clock {
    /// The clock named by `TALLY_NOW`, or the system clock when it is unset or empty.
    pub fn from_env() -> anyhow::Result<Clock> {
        match tally_env::var_os(NOW_ENV).and_then(|v| v.into_string().ok()) {
            Some(value) if !value.trim().is_empty() => Ok(Clock::Fixed(parse_now(&value)?)),
            _ => Ok(Clock::System),
        }
    }

    /// Today's date in UTC.
    pub fn today(self) -> Day {
        match self {
            Clock::Fixed(day) => day,
            Clock::System => Day(OffsetDateTime::now_utc().date()),
        }
    }
}

/// Parses a `TALLY_NOW` value: `YYYY-MM-DD` or RFC 3339.
pub fn parse_now(value: &str) -> anyhow::Result<Day> {
    let value = value.trim();
    if let Ok(day) = value.parse::<Day>() {
        return Ok(day);
    }
    let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) else {
        bail!(
            "{NOW_ENV}={value:?} is neither YYYY-MM-DD nor an RFC 3339 timestamp; fix or unset it"
        );
    };
    let utc = at.to_offset(time::UtcOffset::UTC);
    Ok(Day(utc.date()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_days_and_timestamps() {
        assert_eq!(parse_now("2026-11-24").unwrap().to_string(), "2026-11-24");
        assert_eq!(
            parse_now("2026-11-24T23:30:00-02:00").unwrap().to_string(),
            "2026-11-25"
        );
        assert!(parse_now("yesterday").is_err());
    }
}
