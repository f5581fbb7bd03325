//! The installation's week schedule: weeks start on a weekday chosen at random once (spreading
//! uploads over the week, as Go's telemetry does) and stored race-free in the `weekday` file.

use std::io;

use crate::{Day, Error, Home, fsio, io_error, make_dir, read_small, snippet};

/// One week of the installation's schedule: `[start, end)`, seven days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Week {
    /// First day.
    pub start: Day,
    /// The day after the last day (exclusive): `start + 7`.
    pub end: Day,
}

impl Week {
    /// The week starting on weekday `start_weekday` that contains `day`.
    pub fn containing(day: Day, start_weekday: time::Weekday) -> Result<Week, Error> {
        let today = i64::from(day.0.weekday().number_days_from_monday());
        let first = i64::from(start_weekday.number_days_from_monday());
        let back = (today - first).rem_euclid(7);
        let start = day.plus_days(-back).ok_or(Error::DayOutOfRange(day))?;
        let end = start.plus_days(7).ok_or(Error::DayOutOfRange(day))?;
        Ok(Week { start, end })
    }
}

pub(crate) const WEEKDAYS: [time::Weekday; 7] = [
    time::Weekday::Monday,
    time::Weekday::Tuesday,
    time::Weekday::Wednesday,
    time::Weekday::Thursday,
    time::Weekday::Friday,
    time::Weekday::Saturday,
    time::Weekday::Sunday,
];

/// The weekday file's spelling. A table of literals rather than `time`'s `Display` lowercased:
/// the shim parses the file on every run, and this allocates nothing.
pub(crate) fn weekday_name(w: time::Weekday) -> &'static str {
    match w {
        time::Weekday::Monday => "monday",
        time::Weekday::Tuesday => "tuesday",
        time::Weekday::Wednesday => "wednesday",
        time::Weekday::Thursday => "thursday",
        time::Weekday::Friday => "friday",
        time::Weekday::Saturday => "saturday",
        time::Weekday::Sunday => "sunday",
    }
}

pub(crate) fn parse_weekday(s: &str) -> Option<time::Weekday> {
    let s = s.trim();
    WEEKDAYS
        .into_iter()
        .find(|w| weekday_name(*w).eq_ignore_ascii_case(s))
}

impl Home {
    /// The stored week-start weekday, if one was chosen. Creates nothing.
    pub fn stored_weekday(&self) -> Result<Option<time::Weekday>, Error> {
        let path = self.weekday_path();
        match read_small(&path).and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
        }) {
            Ok(text) => parse_weekday(&text)
                .map(Some)
                .ok_or_else(|| Error::BadWeekdayFile {
                    content: snippet(&text),
                    path,
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::BadWeekdayFile {
                content: "(not UTF-8)".into(),
                path,
            }),
            Err(e) => Err(io_error(&path, "read")(e)),
        }
    }

    /// The installation's week-start weekday, choosing one at random and storing it the first
    /// time. Race-free: the file is written complete under a temporary name and hard-linked
    /// into place, so when processes race exactly one choice wins and all of them read it.
    pub fn weekday(&self) -> Result<time::Weekday, Error> {
        if let Some(w) = self.stored_weekday()? {
            return Ok(w);
        }
        make_dir(&self.root)?;
        let choice = WEEKDAYS[fastrand::usize(..WEEKDAYS.len())];
        let path = self.weekday_path();
        fsio::create_exclusive(&path, format!("{}\n", weekday_name(choice)).as_bytes())
            .map_err(io_error(&path, "create"))?;
        self.stored_weekday()?.ok_or_else(|| Error::Io {
            path: self.weekday_path(),
            action: "read back",
            source: io::Error::new(io::ErrorKind::NotFound, "weekday file vanished"),
        })
    }

    /// The week of this installation's schedule that contains `day`.
    pub fn week_of(&self, day: Day) -> Result<Week, Error> {
        Week::containing(day, self.weekday()?)
    }
}
