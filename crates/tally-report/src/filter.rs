//! The upload decision for one week: whether anything may be sent, and exactly what. Pure.
//!
//! The rules, in the order they are checked (the first that fails is the reason given):
//! 1. the mode is `on`;
//! 2. consent predates the week: the `on` date is strictly before the week's first day;
//! 3. the week began at most [`MAX_REPORT_AGE_DAYS`] days ago;
//! 4. a config verified against a pinned key and has not expired;
//! 5. the report's `x` is at most the config's `sample_rate`;
//! 6. something is left after filtering: a section survives only if the config allows its
//!    program, version, OS and arch, and within it a counter survives only if the config names
//!    it and `x` is at most its rate (counts of zero are left out).
//!
//! Everything in an upload copy is from the config's vocabulary: program, OS and arch names are
//! the config's own strings, counter names are from its expanded patterns, and the version is
//! reduced to [`tally_protocol::version::canonical`] form.

use std::collections::BTreeMap;
use std::fmt;

use tally_home::Mode;
use tally_protocol::{
    Day, MAX_REPORT_AGE_DAYS, MAX_REPORT_BYTES, ProgramReport, Report, SectionKey, UploadConfig,
};

/// Why a week's report is not sent. `Display` explains it to the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Withheld {
    /// The mode is `off` or `local`.
    ModeNotOn(Mode),
    /// `tally on` was run on or after the week's first day.
    ConsentNotBeforeWeek { since: Day, week: Day },
    /// The week began more than [`MAX_REPORT_AGE_DAYS`] days before today.
    TooOld { week: Day, age_days: i64 },
    /// No verified config (the reason says why).
    NoConfig(String),
    /// The report's random number is above the sample rate.
    SampledOut { x: f64, sample_rate: f64 },
    /// The config allows none of what was counted that week.
    NothingAllowed { config_version: u64 },
    /// The filtered report would exceed the upload size limit.
    TooLarge { bytes: usize },
    /// The week's stored report can't be read (the message says which file and what to do).
    Unreadable(String),
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Withheld::ModeNotOn(mode) => write!(
                f,
                "the mode is {mode}, so nothing is uploaded (`tally on --endpoint URL --key KEY` \
                 turns uploading on)"
            ),
            Withheld::ConsentNotBeforeWeek { since, week } => write!(
                f,
                "uploading was turned on on {since}, and only weeks that begin after that day \
                 are ever sent; this week began on {week}"
            ),
            Withheld::TooOld { week, age_days } => write!(
                f,
                "the week began on {week}, {age_days} days ago; reports older than \
                 {MAX_REPORT_AGE_DAYS} days are never sent"
            ),
            Withheld::NoConfig(reason) => write!(f, "no verified upload config: {reason}"),
            Withheld::SampledOut { x, sample_rate } => write!(
                f,
                "sampled out: this report's random number x = {x:.4} is above the config's \
                 sample rate {sample_rate}, so it stays on this machine"
            ),
            Withheld::NothingAllowed { config_version } => write!(
                f,
                "the collector's config (version {config_version}) asks for none of the \
                 programs, versions, platforms or counters counted this week at this report's x"
            ),
            Withheld::TooLarge { bytes } => write!(
                f,
                "the filtered report would be {bytes} bytes, over the {MAX_REPORT_BYTES} byte \
                 upload limit"
            ),
            Withheld::Unreadable(problem) => f.write_str(problem),
        }
    }
}

/// The gates a week's report passes before anything of it is sent, in order: the mode is on,
/// consent was given before the week, the week is not too old, and there is a verified config
/// (returned).
pub(crate) fn may_send<'c>(
    week: Day,
    mode: Mode,
    config: Result<&'c UploadConfig, &str>,
    today: Day,
) -> Result<&'c UploadConfig, Withheld> {
    let Mode::On { since } = mode else {
        return Err(Withheld::ModeNotOn(mode));
    };
    if since >= week {
        return Err(Withheld::ConsentNotBeforeWeek { since, week });
    }
    let age_days = today.days_since(week);
    if age_days > MAX_REPORT_AGE_DAYS {
        return Err(Withheld::TooOld { week, age_days });
    }
    config.map_err(|reason| Withheld::NoConfig(reason.to_string()))
}

/// The upload copy of `local` (a week's full report), or why there is none.
/// `config` is the verified config, or the reason there is none.
pub fn upload_copy(
    local: &Report,
    mode: Mode,
    config: Result<&UploadConfig, &str>,
    today: Day,
) -> Result<Report, Withheld> {
    let config = may_send(local.week, mode, config, today)?;
    let x = local.x;
    if x > config.sample_rate {
        return Err(Withheld::SampledOut {
            x,
            sample_rate: config.sample_rate,
        });
    }
    // Sections keyed by what is sent: two local versions with the same canonical form merge.
    let mut sections: BTreeMap<SectionKey, BTreeMap<String, u64>> = BTreeMap::new();
    for section in &local.programs {
        if !config.allows(
            &section.program,
            &section.version,
            &section.os,
            &section.arch,
        ) {
            continue;
        }
        let (Some(program), Some(version)) = (
            config.program(&section.program),
            tally_protocol::version::canonical(&section.version),
        ) else {
            continue;
        };
        let rates = program.counter_rates();
        let kept = section
            .counters
            .iter()
            .filter(|&(name, &count)| count > 0 && rates.get(name).is_some_and(|&rate| x <= rate));
        let key = (
            program.name.clone(),
            version,
            section.os.clone(),
            section.arch.clone(),
        );
        for (name, count) in kept {
            let total = sections
                .entry(key.clone())
                .or_default()
                .entry(name.clone())
                .or_insert(0);
            *total = total.saturating_add(*count);
        }
    }
    let programs: Vec<ProgramReport> = sections
        .into_iter()
        .filter(|(_, counters)| !counters.is_empty())
        .map(ProgramReport::from)
        .collect();
    if programs.is_empty() {
        return Err(Withheld::NothingAllowed {
            config_version: config.version,
        });
    }
    let report = Report {
        week: local.week,
        x,
        config_version: Some(config.version),
        programs,
    };
    let bytes = report.to_canonical_json().len();
    if bytes > MAX_REPORT_BYTES {
        return Err(Withheld::TooLarge { bytes });
    }
    Ok(report)
}
