//! Deciding whether an uploaded report is accepted. Pure functions, no I/O, never panic.
//!
//! An upload is accepted only if every one of these holds; the first failure is the one-line
//! reason sent back with the 400:
//!
//! 1. the body is at most [`MAX_REPORT_BYTES`] of JSON of the report's exact shape (unknown
//!    fields refused, counts non-negative integers, at least one section, no section twice, no
//!    counter twice in a section: [`Report::parse`]);
//! 2. the URL's week is a real day and equals the report's `week`;
//! 3. the week has ended (`week + 7 <= today`) and began at most [`MAX_REPORT_AGE_DAYS`] ago;
//! 4. `x` is in `(0, 1)` and at most the config's `sample_rate` (the client never sends other
//!    reports);
//! 5. the report names a config version the server has served ([`check_against_config`]), and
//!    every section's program, version, OS and arch is allowed by it, and every counter is named
//!    by it with a rate at least `x` (a program name also follows the rule it shares with the
//!    client, [`tally_protocol::is_program_name`], which [`Report::parse`] checks in step 1);
//! 6. every version is canonical ([`tally_protocol::version::is_canonical`]: `MAJOR.MINOR.PATCH`
//!    without leading zeros and with bounded numbers, optionally `-nightly`, `-beta`, `-beta.N`
//!    or `-dev`), as the client writes upload copies: lenient range matching ignores
//!    pre-release tags and leading zeros, so without this a version could smuggle free text
//!    into the store or open a bucket of its own (`01.95.0`, `99999.99999.99999`);
//! 7. every section counts something, and every count is above zero: the client leaves zero
//!    counts and empty sections out of upload copies, so anything else would only add a report
//!    to a program's or version's total without a single count behind it.
//!
//! A report read back from the store is checked again, by steps 1 and 4 to 7 against the config
//! version it names (`crate::configs::Configs::check_stored`): not its age, as it was recent
//! when it was uploaded. `tally-server import` checks the same when the store has served that
//! version, and otherwise what every config implies ([`check_without_config`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use tally_protocol::version::{MAX_MAJOR, MAX_MINOR_PATCH, is_canonical};

use crate::merge::MergedWeek;
use tally_protocol::{
    Day, MAX_REPORT_AGE_DAYS, MAX_REPORT_BYTES, ProgramConfig, Report, UploadConfig, WEEK_DAYS,
    report::ReportError,
};

/// Longest value echoed back in a refusal, so a reason stays one short line.
const MAX_ECHO: usize = 64;

/// Checks everything that needs no config (steps 1 to 3, and `x` in `(0, 1)`).
pub fn parse_upload(url_week: &str, body: &[u8], today: Day) -> Result<Report, String> {
    let Ok(url_day) = url_week.parse::<Day>() else {
        return Err(format!(
            "week {} in the URL is not a YYYY-MM-DD day",
            echo(url_week)
        ));
    };
    let report = Report::parse(body).map_err(|e| match e {
        ReportError::TooLarge(n) => {
            format!("report is {n} bytes, over the {MAX_REPORT_BYTES} byte limit")
        }
        ReportError::Json(why) => format!("report is not a valid report: {}", one_line(&why)),
        ReportError::BadX(x) => format!("report x is {x}, not in (0, 1)"),
    })?;
    if report.week != url_day {
        return Err(format!(
            "report week {} does not match the URL week {url_day}",
            report.week
        ));
    }
    let age = today.days_since(report.week);
    if age < WEEK_DAYS {
        return Err(format!(
            "week {} has not ended yet (today is {today}; a week can be sent from its 8th day)",
            report.week
        ));
    }
    if age > MAX_REPORT_AGE_DAYS {
        return Err(format!(
            "week {} began {age} days ago, more than the {MAX_REPORT_AGE_DAYS} days accepted",
            report.week
        ));
    }
    check_config_version_named(&report)?;
    Ok(report)
}

/// Checks a parsed report against the config version it names (step 5).
pub fn check_against_config(report: &Report, config: &UploadConfig) -> Result<(), String> {
    if report.x > config.sample_rate {
        return Err(format!(
            "report x {} is above config {}'s sample_rate {}; such reports are not collected",
            report.x, config.version, config.sample_rate
        ));
    }
    for section in &report.programs {
        let Some(program) = config.program(&section.program) else {
            return Err(format!(
                "program {} is not collected by config {}",
                echo(&section.program),
                config.version
            ));
        };
        check_canonical_version(&section.version)?;
        if section.counters.is_empty() {
            return Err(format!(
                "the section for {} {} on {}/{} has no counters; upload copies leave such \
                 sections out",
                echo(&section.program),
                echo(&section.version),
                echo(&section.os),
                echo(&section.arch)
            ));
        }
        if let Some((name, _)) = section.counters.iter().find(|(_, count)| **count == 0) {
            return Err(zero_count(name));
        }
        if !config.allows(
            &section.program,
            &section.version,
            &section.os,
            &section.arch,
        ) {
            return Err(format!(
                "{} {} on {}/{} is not collected by config {}",
                echo(&section.program),
                echo(&section.version),
                echo(&section.os),
                echo(&section.arch),
                config.version
            ));
        }
        let rates = program.counter_rates();
        for name in section.counters.keys() {
            match rates.get(name) {
                None => {
                    return Err(format!(
                        "counter {} is not collected for {} by config {}",
                        echo(name),
                        echo(&section.program),
                        config.version
                    ));
                }
                Some(rate) if report.x > *rate => {
                    return Err(format!(
                        "counter {} has rate {rate} in config {}, below the report's x {}",
                        echo(name),
                        config.version,
                        report.x
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Checks a week's merge read back from the store (a checkpoint, or the merged copy `export`
/// reads) against every config served: each program, counter, version, OS and architecture in
/// it must be one some served config collects, as it is when the merge was made of checked
/// reports. A merge planted in the store, or made by a collector that checked less, fails.
pub fn check_merged(merged: &MergedWeek, configs: &[Arc<UploadConfig>]) -> Result<(), String> {
    for (name, program) in &merged.programs {
        let wanted: Vec<&ProgramConfig> = configs.iter().filter_map(|c| c.program(name)).collect();
        if wanted.is_empty() {
            return Err(format!(
                "program {} is collected by no config served",
                echo(name)
            ));
        }
        let counters: BTreeSet<String> = wanted
            .iter()
            .flat_map(|p| p.counter_rates().into_keys())
            .collect();
        let split = program.by_version.values().flat_map(|c| c.keys());
        if let Some(counter) = program
            .counters
            .keys()
            .chain(split)
            .find(|c| !counters.contains(*c))
        {
            return Err(format!(
                "counter {} is collected for {} by no config served",
                echo(counter),
                echo(name)
            ));
        }
        if let Some(version) = program
            .versions
            .keys()
            .chain(program.by_version.keys())
            .find(|v| {
                let collected = is_canonical(v) && wanted.iter().any(|p| p.allows_version(v));
                !collected && !is_layout_bucket(configs, name, v)
            })
        {
            return Err(format!(
                "version {} of {} is collected by no config served",
                echo(version),
                echo(name)
            ));
        }
        let os = program
            .os
            .keys()
            .find(|v| !configs.iter().any(|c| c.os.contains(v)));
        if let Some(os) = os {
            return Err(format!("OS {} is collected by no config served", echo(os)));
        }
        let arch = program
            .arch
            .keys()
            .find(|v| !configs.iter().any(|c| c.arch.contains(v)));
        if let Some(arch) = arch {
            return Err(format!(
                "architecture {} is collected by no config served",
                echo(arch)
            ));
        }
    }
    Ok(())
}

/// Whether `version` is a version bucket of `program` in the measurement layout of some served
/// config's private-aggregation section (a `major.minor` bucket it lists, or `other`): what a
/// week collected by private aggregation names its versions by.
fn is_layout_bucket(configs: &[Arc<UploadConfig>], program: &str, version: &str) -> bool {
    configs
        .iter()
        .filter_map(|c| c.aggregation.as_ref())
        .flat_map(|section| &section.layout.programs)
        .filter(|p| p.name == program)
        .any(|p| {
            version == tally_protocol::config::layout::OTHER_VERSION
                || p.versions.iter().any(|bucket| bucket == version)
        })
}

/// Longest OS or architecture name (Rust's `std::env::consts::OS` and `ARCH` are far shorter).
const MAX_PLATFORM_LEN: usize = 32;

/// Checks what every config implies, for a report that cannot be checked against its own config
/// (`import` into a store that has not served it yet): a config version named, versions in the
/// canonical form, sections with counts above zero, OS and architecture names of lowercase ASCII
/// letters, digits and `_`, and counter names a client can count: at most
/// [`tally_sys::MAX_NAME_LEN`] bytes (the longest a counter file holds), no control characters,
/// and a program name and `/` first, as every name in tally's vocabulary and every name the
/// counter library accepts (so none starts like a spreadsheet formula).
pub fn check_without_config(report: &Report) -> Result<(), String> {
    check_config_version_named(report)?;
    let is_platform = |name: &str| {
        !name.is_empty()
            && name.len() <= MAX_PLATFORM_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    for section in &report.programs {
        check_canonical_version(&section.version)?;
        for (what, name) in [("OS", &section.os), ("architecture", &section.arch)] {
            if !is_platform(name) {
                return Err(format!(
                    "{what} {} is not 1 to {MAX_PLATFORM_LEN} lowercase ASCII letters, digits \
                     and `_`",
                    echo(name)
                ));
            }
        }
        if section.counters.is_empty() {
            return Err(format!(
                "the section for {} {} has no counters; upload copies leave such sections out",
                echo(&section.program),
                echo(&section.version)
            ));
        }
        for (name, count) in &section.counters {
            let program = name.split_once('/').map(|(program, _)| program);
            if name.len() > tally_sys::MAX_NAME_LEN
                || name.chars().any(char::is_control)
                || !program.is_some_and(tally_protocol::is_program_name)
            {
                return Err(format!(
                    "counter {} ({} bytes) is not a name a client counts: at most {} bytes \
                     without control characters, starting with a program name and `/`",
                    echo(name),
                    name.len(),
                    tally_sys::MAX_NAME_LEN
                ));
            }
            if *count == 0 {
                return Err(zero_count(name));
            }
        }
    }
    Ok(())
}

/// Only upload copies name the config version they were made under; local copies do not.
fn check_config_version_named(report: &Report) -> Result<(), String> {
    if report.config_version.is_none() {
        return Err("report names no config_version (only upload copies are accepted)".into());
    }
    Ok(())
}

/// A version must be spelled the one way clients normalise it to ([`is_canonical`]).
fn check_canonical_version(version: &str) -> Result<(), String> {
    if !is_canonical(version) {
        return Err(format!(
            "version {} is not MAJOR.MINOR.PATCH (no leading zeros, major at most \
             {MAX_MAJOR}, minor and patch at most {MAX_MINOR_PATCH}) with an optional \
             -nightly, -beta[.N] or -dev",
            echo(version)
        ));
    }
    Ok(())
}

/// Why a counter with a zero count is refused.
fn zero_count(name: &str) -> String {
    format!(
        "counter {} has count 0; upload copies leave zero counts out",
        echo(name)
    )
}

/// A client-supplied value, cut short and with control characters replaced, for a reason line.
fn echo(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(MAX_ECHO)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().count() > MAX_ECHO {
        out.push('…');
    }
    format!("{out:?}")
}

fn one_line(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = include_str!("../../../config-schema/example-config.json");
    const REPORT: &str = include_str!("../../../config-schema/example-report.json");

    fn today() -> Day {
        "2026-11-24".parse().unwrap()
    }

    fn check(url_week: &str, body: &str) -> Result<Report, String> {
        let config = UploadConfig::parse(CONFIG.as_bytes()).unwrap();
        let report = parse_upload(url_week, body.as_bytes(), today())?;
        check_against_config(&report, &config)?;
        Ok(report)
    }

    #[test]
    fn accepts_the_example() {
        check("2026-11-16", REPORT).unwrap();
    }

    #[test]
    fn refuses_each_violation_with_a_reason() {
        let cases = [
            ("2026-11-17", REPORT.to_string(), "does not match"),
            ("2026-02-30", REPORT.to_string(), "not a YYYY-MM-DD"),
            (
                "2026-11-18",
                REPORT.replace("2026-11-16", "2026-11-18"),
                "not ended",
            ),
            (
                "2026-11-02",
                REPORT.replace("2026-11-16", "2026-11-02"),
                "more than the 21",
            ),
            ("2026-11-16", REPORT.replace("0.4231", "0"), "not in (0, 1)"),
            (
                "2026-11-16",
                REPORT.replace("\"cargo\"", "\"ghc\""),
                "program \"ghc\"",
            ),
            (
                "2026-11-16",
                REPORT.replace("\"cargo\"", "\"/home/alice/Cargo\""),
                "lowercase ASCII letters",
            ),
            (
                "2026-11-16",
                REPORT.replace("1.95.0", "1.60.0"),
                "not collected by config",
            ),
            (
                "2026-11-16",
                REPORT.replace("1.95.0", "1.95.0-secret"),
                "not MAJOR.MINOR.PATCH",
            ),
            (
                "2026-11-16",
                REPORT.replace("1.95.0", "1.95"),
                "not MAJOR.MINOR.PATCH",
            ),
            (
                "2026-11-16",
                REPORT.replace("1.95.0", "01.95.0"),
                "not MAJOR.MINOR.PATCH",
            ),
            (
                "2026-11-16",
                REPORT.replace("1.95.0", "99999.99999.99999"),
                "not MAJOR.MINOR.PATCH",
            ),
            (
                "2026-11-16",
                REPORT.replace("1.95.0", "1.95.0-"),
                "not MAJOR.MINOR.PATCH",
            ),
            (
                "2026-11-16",
                REPORT.replace(": 12", ": 0"),
                "count 0",
            ),
            (
                "2026-11-16",
                REPORT.replace(
                    "\"cargo/invocations\": 12,\n        \"cargo/subcommand:build\": 9,\n        \"cargo/subcommand:test\": 3",
                    "",
                ),
                "has no counters",
            ),
            (
                "2026-11-16",
                r#"{"week": "2026-11-16", "x": 0.5, "config_version": 1, "programs": []}"#
                    .to_string(),
                "programs is empty",
            ),
            (
                "2026-11-16",
                REPORT.replace(": 12,", ": 12, \"cargo/invocations\": 1,"),
                "appears twice",
            ),
            (
                "2026-11-16",
                REPORT.replace("linux", "plan9"),
                "not collected by config",
            ),
            (
                "2026-11-16",
                REPORT.replace("cargo/subcommand:test", "cargo/subcommand:secret"),
                "counter",
            ),
            (
                "2026-11-16",
                REPORT.replace(": 12", ": -12"),
                "not a valid report",
            ),
            (
                "2026-11-16",
                REPORT.replace(": 12", ": 1.5"),
                "not a valid report",
            ),
            (
                "2026-11-16",
                REPORT.replace("\"config_version\": 1,", ""),
                "no config_version",
            ),
            (
                "2026-11-16",
                REPORT.replace("{", "{\"host\": \"me\","),
                "not a valid report",
            ),
        ];
        for (week, body, want) in cases {
            let err = check(week, &body).unwrap_err();
            assert!(
                err.contains(want),
                "{week}: {err:?} should mention {want:?}"
            );
            assert!(!err.contains('\n'), "{err:?} is not one line");
        }
    }

    #[test]
    fn refuses_counters_whose_rate_is_below_x() {
        // cargo/build/flag:* has rate 0.5 in the example config.
        let body = REPORT.replace("0.4231", "0.7").replace(
            "\"cargo/subcommand:test\": 3",
            "\"cargo/build/flag:--release\": 1",
        );
        assert!(check("2026-11-16", &body).unwrap_err().contains("rate 0.5"));
        let body = REPORT.replace(
            "\"cargo/subcommand:test\": 3",
            "\"cargo/build/flag:--release\": 1",
        );
        check("2026-11-16", &body).unwrap();
    }

    /// What every config implies, for `import` into a store that has not served the report's
    /// config: the example passes; free text in a version, OS or counter name, an overlong or
    /// formula-like counter name, an empty section or a zero count do not.
    #[test]
    fn checks_what_every_config_implies() {
        let check = |body: &str| {
            let report = Report::parse(body.as_bytes()).unwrap();
            check_without_config(&report)
        };
        check(REPORT).unwrap();
        let long = format!("cargo/{}", "z".repeat(tally_sys::MAX_NAME_LEN));
        for (body, want) in [
            (REPORT.replace("1.95.0", "zqsecret"), "version \"zqsecret\""),
            (REPORT.replace("linux", "Linux 6.1"), "OS"),
            (REPORT.replace("x86_64", "=cmd"), "architecture"),
            (REPORT.replace("cargo/invocations", &long), "counter"),
            (
                REPORT.replace("cargo/invocations", "=HYPERLINK(1)"),
                "counter",
            ),
            (
                REPORT.replace("cargo/invocations", "/home/alice"),
                "counter",
            ),
            (
                REPORT.replace("cargo/invocations", "cargo/a\\u0007"),
                "counter",
            ),
            (REPORT.replace(": 12", ": 0"), "count 0"),
            (
                REPORT.replace("\"config_version\": 1,", ""),
                "config_version",
            ),
        ] {
            let err = check(&body).unwrap_err();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
            assert!(err.len() < 400, "{err}");
        }
    }

    /// A merge of accepted reports passes; one holding a program, counter, version, OS or
    /// architecture that no served config collects does not.
    #[test]
    fn merges_hold_only_what_a_config_collects() {
        let configs = [Arc::new(UploadConfig::parse(CONFIG.as_bytes()).unwrap())];
        let report = Report::parse(REPORT.as_bytes()).unwrap();
        let mut merged = MergedWeek::new(report.week);
        merged.add(&report);
        check_merged(&merged, &configs).unwrap();
        for (change, want) in [
            (REPORT.replace("\"cargo\"", "\"zqsecret-prog\""), "program"),
            (
                REPORT.replace("cargo/invocations", "cargo/zqsecret"),
                "counter",
            ),
            (REPORT.replace("1.95.0", "zqsecret"), "version"),
            (REPORT.replace("1.95.0", "1.60.0"), "version"),
            (REPORT.replace("linux", "zqsecret"), "OS"),
            (REPORT.replace("x86_64", "zqsecret"), "architecture"),
        ] {
            let mut planted = merged.clone();
            planted.add(&Report::parse(change.as_bytes()).unwrap());
            let err = check_merged(&planted, &configs).unwrap_err();
            assert!(err.contains(want) && err.contains("no config"), "{err}");
        }
    }

    #[test]
    fn the_age_window_is_inclusive() {
        let ok_old = REPORT.replace("2026-11-16", "2026-11-03");
        check("2026-11-03", &ok_old).unwrap();
        let just_ended = REPORT.replace("2026-11-16", "2026-11-17");
        check("2026-11-17", &just_ended).unwrap();
    }
}
