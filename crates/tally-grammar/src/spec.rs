//! Flag tables and the two scanners (GNU/clap style and Go style) every grammar is built on.
//!
//! A grammar is data: a table of [`FlagSpec`]s per command. The scanners walk an argument list
//! against a table and yield [`Token`]s; they never look at a value except to compare it with a
//! flag's closed value set, and never copy one into a counter name unless it is in that set.

/// What a flag does with a value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value {
    /// A switch: takes no value (`--release`). Go allows `-race=true`; the value is ignored.
    None,
    /// Takes a value from an open set (paths, names, numbers): never recorded.
    Open,
    /// Takes a value from a closed set: recorded when it is in the set, else as `other`.
    Closed(&'static [&'static str]),
    /// May take a closed value, but only attached with `=` (`--timings=html`).
    OptionalClosed(&'static [&'static str]),
}

/// One flag of a command's grammar.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlagSpec {
    /// The canonical spelling, used in counter names (`--release`, `-race`).
    pub name: &'static str,
    /// A one-letter alias (`-r` for `--release`), GNU style only.
    pub short: Option<char>,
    /// What the flag takes.
    pub value: Value,
}

/// Shorthand constructors keep the tables readable.
pub(crate) const fn switch(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        short: None,
        value: Value::None,
    }
}
pub(crate) const fn switch_s(name: &'static str, short: char) -> FlagSpec {
    FlagSpec {
        name,
        short: Some(short),
        value: Value::None,
    }
}
pub(crate) const fn open(name: &'static str) -> FlagSpec {
    FlagSpec {
        name,
        short: None,
        value: Value::Open,
    }
}
pub(crate) const fn open_s(name: &'static str, short: char) -> FlagSpec {
    FlagSpec {
        name,
        short: Some(short),
        value: Value::Open,
    }
}
pub(crate) const fn closed(name: &'static str, set: &'static [&'static str]) -> FlagSpec {
    FlagSpec {
        name,
        short: None,
        value: Value::Closed(set),
    }
}
pub(crate) const fn optional(name: &'static str, set: &'static [&'static str]) -> FlagSpec {
    FlagSpec {
        name,
        short: None,
        value: Value::OptionalClosed(set),
    }
}

/// One step of a scan.
#[derive(Debug)]
pub(crate) enum Token<'a> {
    /// A flag of the table, with the value it took (if any).
    Flag {
        spec: &'static FlagSpec,
        value: Option<&'a str>,
    },
    /// Something flag-shaped that the table does not know: counted as `other`.
    Unknown,
    /// A non-flag argument; its text is only ever compared with fixed word lists.
    Positional,
}

/// Where a scan stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// All arguments were consumed.
    End,
    /// At `--` (index of the `--`): what follows belongs to another program.
    DoubleDash(usize),
    /// At the first positional (its index), when asked to stop there.
    Positional(usize),
}

/// The name a flag occurrence is counted under: `--flag`, `--flag=value` for a value in the
/// flag's closed set, `--flag=other` for a value outside it.
pub(crate) fn flag_label(spec: &FlagSpec, value: Option<&str>) -> String {
    match (spec.value, value) {
        (Value::Closed(set) | Value::OptionalClosed(set), Some(v)) => {
            if set.contains(&v) {
                [spec.name, "=", v].concat()
            } else {
                [spec.name, "=other"].concat()
            }
        }
        // A closed flag whose value is missing (last argument) or unreadable (not UTF-8) has
        // no value from its set: `other`, so the name stays in the vocabulary.
        (Value::Closed(_), None) => [spec.name, "=other"].concat(),
        _ => spec.name.to_string(),
    }
}

/// Every label [`flag_label`] can produce for `spec`.
pub(crate) fn flag_labels(spec: &FlagSpec) -> Vec<String> {
    match spec.value {
        Value::None | Value::Open => vec![spec.name.to_string()],
        Value::Closed(set) => set
            .iter()
            .map(|v| [spec.name, "=", v].concat())
            .chain([[spec.name, "=other"].concat()])
            .collect(),
        Value::OptionalClosed(set) => [spec.name.to_string()]
            .into_iter()
            .chain(set.iter().map(|v| [spec.name, "=", v].concat()))
            .chain([[spec.name, "=other"].concat()])
            .collect(),
    }
}

fn takes_separate_value(spec: &FlagSpec) -> bool {
    matches!(spec.value, Value::Open | Value::Closed(_))
}

/// Scans GNU/clap-style arguments (`--long`, `--long=value`, `--long value`, `-s`, `-svalue`,
/// `-s value`, `-abc` for several switches). Non-UTF-8 arguments are `None`: flag-shaped ones
/// cannot be told apart, so they count as unknown; others are positionals that are never read.
pub(crate) fn scan_gnu<'a>(
    args: &[Option<&'a str>],
    table: &'static [FlagSpec],
    stop_at_positional: bool,
    out: &mut Vec<Token<'a>>,
) -> Stop {
    let mut i = 0;
    while i < args.len() {
        let Some(arg) = args[i] else {
            // Non-UTF-8: never a flag of any grammar here.
            out.push(Token::Positional);
            if stop_at_positional {
                return Stop::Positional(i);
            }
            i += 1;
            continue;
        };
        if arg == "--" {
            return Stop::DoubleDash(i);
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            match table
                .iter()
                .find(|s| s.name.strip_prefix("--") == Some(name))
            {
                Some(spec) => {
                    let value = if inline.is_some() {
                        inline
                    } else if takes_separate_value(spec) {
                        i += 1;
                        args.get(i).copied().flatten()
                    } else {
                        None
                    };
                    out.push(Token::Flag { spec, value });
                }
                None => out.push(Token::Unknown),
            }
            i += 1;
            continue;
        }
        if let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let chars = shorts.char_indices();
            for (pos, c) in chars {
                match find_short(table, c) {
                    Some(spec) if takes_separate_value(spec) => {
                        let rest = &shorts[pos + c.len_utf8()..];
                        let value = if !rest.is_empty() {
                            Some(rest.strip_prefix('=').unwrap_or(rest))
                        } else {
                            i += 1;
                            args.get(i).copied().flatten()
                        };
                        out.push(Token::Flag { spec, value });
                        break;
                    }
                    Some(spec) => out.push(Token::Flag { spec, value: None }),
                    None => {
                        out.push(Token::Unknown);
                        break;
                    }
                }
            }
            i += 1;
            continue;
        }
        out.push(Token::Positional);
        if stop_at_positional {
            return Stop::Positional(i);
        }
        i += 1;
    }
    Stop::End
}

fn find_short(table: &'static [FlagSpec], c: char) -> Option<&'static FlagSpec> {
    table.iter().find(|s| s.short == Some(c))
}

/// Scans Go-style arguments (Go's `flag` package: `-flag`, `--flag`, `-flag=value`,
/// `-flag value` for non-boolean flags; no combined switches). `-args` (for `go test`) stops
/// the scan like `--`, since what follows goes to the test binary.
pub(crate) fn scan_go<'a>(
    args: &[Option<&'a str>],
    table: &'static [FlagSpec],
    stop_at_positional: bool,
    out: &mut Vec<Token<'a>>,
) -> Stop {
    let mut i = 0;
    while i < args.len() {
        let Some(arg) = args[i] else {
            out.push(Token::Positional);
            if stop_at_positional {
                return Stop::Positional(i);
            }
            i += 1;
            continue;
        };
        if arg == "--" {
            return Stop::DoubleDash(i);
        }
        let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
        match body {
            Some(body) if !body.is_empty() => {
                let (name, inline) = match body.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (body, None),
                };
                // `go test` accepts `-test.run` as well as `-run`.
                let name = name.strip_prefix("test.").unwrap_or(name);
                if name == "args" && table.iter().any(|s| s.name == "-args") {
                    return Stop::DoubleDash(i);
                }
                match table
                    .iter()
                    .find(|s| s.name.strip_prefix('-') == Some(name))
                {
                    Some(spec) => {
                        let value = match (inline, spec.value) {
                            (Some(v), _) => Some(v),
                            (None, Value::Open | Value::Closed(_)) => {
                                i += 1;
                                args.get(i).copied().flatten()
                            }
                            _ => None,
                        };
                        let value = if matches!(spec.value, Value::None) {
                            None
                        } else {
                            value
                        };
                        out.push(Token::Flag { spec, value });
                    }
                    None => out.push(Token::Unknown),
                }
            }
            _ => {
                // A lone `-` is a positional (stdin) in Go tools too.
                out.push(Token::Positional);
                if stop_at_positional {
                    return Stop::Positional(i);
                }
            }
        }
        i += 1;
    }
    Stop::End
}

#[cfg(test)]
mod tests {
    use super::*;

    static TABLE: &[FlagSpec] = &[
        switch_s("--release", 'r'),
        switch_s("--verbose", 'v'),
        FlagSpec {
            name: "--jobs",
            short: Some('j'),
            value: Value::Open,
        },
        closed("--color", &["auto", "always", "never"]),
        optional("--timings", &["html", "json"]),
    ];

    fn labels(args: &[&str]) -> (Vec<String>, Stop) {
        let args: Vec<Option<&str>> = args.iter().map(|a| Some(*a)).collect();
        let mut out = Vec::new();
        let stop = scan_gnu(&args, TABLE, false, &mut out);
        let names = out
            .iter()
            .map(|t| match t {
                Token::Flag { spec, value } => flag_label(spec, *value),
                Token::Unknown => "other".into(),
                Token::Positional => "pos".into(),
            })
            .collect();
        (names, stop)
    }

    #[test]
    fn gnu_forms() {
        let (names, stop) = labels(&[
            "-r",
            "-vv",
            "-j2",
            "-j",
            "4",
            "--color",
            "always",
            "--color=sometimes",
            "--timings",
            "--timings=html",
            "--nope",
            "src",
            "--",
            "--release",
        ]);
        assert_eq!(
            names,
            [
                "--release",
                "--verbose",
                "--verbose",
                "--jobs",
                "--jobs",
                "--color=always",
                "--color=other",
                "--timings",
                "--timings=html",
                "other",
                "pos"
            ]
        );
        assert_eq!(stop, Stop::DoubleDash(12));
    }

    #[test]
    fn labels_cover_every_outcome() {
        let all = flag_labels(&TABLE[4]);
        assert_eq!(
            all,
            [
                "--timings",
                "--timings=html",
                "--timings=json",
                "--timings=other"
            ]
        );
    }
}
