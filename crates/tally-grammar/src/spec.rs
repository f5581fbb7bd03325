//! Flag tables and the two scanners (GNU/clap style and Go style) every grammar is built on.
//!
//! A grammar is data: a table of [`FlagSpec`]s per command. The scanners walk an argument list
//! against a table and yield [`Token`]s; they never look at a value except to compare it with a
//! flag's closed value set, and never copy one into a counter name unless it is in that set.

use crate::{Names, TOOLCHAIN_CHANNELS};

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

/// How a tool spells its flags.
#[derive(Clone, Copy)]
pub(crate) enum Dialect {
    /// GNU/clap style (`--long`, `--long=value`, `--long value`, `-s`, `-svalue`, `-s value`,
    /// `-abc` for several switches).
    Gnu,
    /// Go's `flag` package (`-flag`, `--flag`, `-flag=value`, `-flag value` for non-boolean
    /// flags; no combined switches). `-args` (for `go test`) stops the scan like `--`, since
    /// what follows goes to the test binary.
    Go,
}

/// What one argument was read as.
enum Read {
    /// A flag-shaped argument, recorded as its tokens (its separate value, if any, consumed).
    Flag,
    /// Not flag-shaped: a positional.
    Positional,
    /// The scan stops here (Go's `-args`).
    Stop(Stop),
}

/// One scan in progress: the arguments, the index of the one being read, the tokens so far.
struct Cursor<'s, 'a> {
    args: &'s [Option<&'a str>],
    i: usize,
    out: &'s mut Vec<Token<'a>>,
}

impl<'a> Cursor<'_, 'a> {
    /// The argument after the current one, taken as a flag's separate value (`--flag value`):
    /// the cursor moves onto it. `None` past the end or for a non-UTF-8 argument.
    fn next_value(&mut self) -> Option<&'a str> {
        self.i += 1;
        self.args.get(self.i).copied().flatten()
    }
}

/// Scans `args` as `dialect` spells flags, pushing a token for each flag, unknown flag and
/// positional. Non-UTF-8 arguments are `None`: flag-shaped ones cannot be told apart from
/// positionals, so they count as positionals, which are never read. `--` stops the scan, and
/// so does the first positional when `stop_at_positional`.
pub(crate) fn scan<'a>(
    dialect: Dialect,
    args: &[Option<&'a str>],
    table: &'static [FlagSpec],
    stop_at_positional: bool,
    out: &mut Vec<Token<'a>>,
) -> Stop {
    let mut cursor = Cursor { args, i: 0, out };
    while cursor.i < args.len() {
        let read = match args[cursor.i] {
            Some("--") => return Stop::DoubleDash(cursor.i),
            Some(arg) => match dialect {
                Dialect::Gnu => read_gnu(&mut cursor, table, arg),
                Dialect::Go => read_go(&mut cursor, table, arg),
            },
            None => Read::Positional,
        };
        match read {
            Read::Flag => {}
            Read::Positional => {
                cursor.out.push(Token::Positional);
                if stop_at_positional {
                    return Stop::Positional(cursor.i);
                }
            }
            Read::Stop(stop) => return stop,
        }
        cursor.i += 1;
    }
    Stop::End
}

/// Splits a flag body at its first `=`: `name=value` gives the inline value, `name` none.
fn split_inline(body: &str) -> (&str, Option<&str>) {
    match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    }
}

/// Reads one GNU-style argument `arg`, the one at the cursor.
fn read_gnu<'a>(cursor: &mut Cursor<'_, 'a>, table: &'static [FlagSpec], arg: &'a str) -> Read {
    if let Some(long) = arg.strip_prefix("--") {
        let (name, inline) = split_inline(long);
        match table
            .iter()
            .find(|s| s.name.strip_prefix("--") == Some(name))
        {
            Some(spec) => {
                let value = if inline.is_some() {
                    inline
                } else if takes_separate_value(spec) {
                    cursor.next_value()
                } else {
                    None
                };
                cursor.out.push(Token::Flag { spec, value });
            }
            None => cursor.out.push(Token::Unknown),
        }
        return Read::Flag;
    }
    let Some(shorts) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
        return Read::Positional;
    };
    for (pos, c) in shorts.char_indices() {
        match find_short(table, c) {
            Some(spec) if takes_separate_value(spec) => {
                let rest = &shorts[pos + c.len_utf8()..];
                let value = if !rest.is_empty() {
                    Some(rest.strip_prefix('=').unwrap_or(rest))
                } else {
                    cursor.next_value()
                };
                cursor.out.push(Token::Flag { spec, value });
                break;
            }
            Some(spec) => cursor.out.push(Token::Flag { spec, value: None }),
            None => {
                cursor.out.push(Token::Unknown);
                break;
            }
        }
    }
    Read::Flag
}

fn find_short(table: &'static [FlagSpec], c: char) -> Option<&'static FlagSpec> {
    table.iter().find(|s| s.short == Some(c))
}

/// Reads one Go-style argument `arg`, the one at the cursor.
fn read_go<'a>(cursor: &mut Cursor<'_, 'a>, table: &'static [FlagSpec], arg: &'a str) -> Read {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
    // A lone `-` is a positional (stdin) in Go tools too.
    let Some(body) = body.filter(|b| !b.is_empty()) else {
        return Read::Positional;
    };
    let (name, inline) = split_inline(body);
    // `go test` accepts `-test.run` as well as `-run`.
    let name = name.strip_prefix("test.").unwrap_or(name);
    if name == "args" && table.iter().any(|s| s.name == "-args") {
        return Read::Stop(Stop::DoubleDash(cursor.i));
    }
    match table
        .iter()
        .find(|s| s.name.strip_prefix('-') == Some(name))
    {
        Some(spec) => {
            let value = match (inline, spec.value) {
                (Some(v), _) => Some(v),
                (None, Value::Open | Value::Closed(_)) => cursor.next_value(),
                _ => None,
            };
            let value = if matches!(spec.value, Value::None) {
                None
            } else {
                value
            };
            cursor.out.push(Token::Flag { spec, value });
        }
        None => cursor.out.push(Token::Unknown),
    }
    Read::Flag
}

/// Pushes `flag:<label>` for each flag token and `flag:other` for each unknown one; returns
/// whether there was a positional.
pub(crate) fn push_flags(tokens: &[Token<'_>], names: &mut Names) -> bool {
    let mut positional = false;
    for token in tokens {
        match token {
            Token::Flag { spec, value } => names.push_parts(&["flag:", &flag_label(spec, *value)]),
            Token::Unknown => names.push("flag:other"),
            Token::Positional => positional = true,
        }
    }
    positional
}

/// Pushes `<sub>/flag:<label>` for each flag token and `<sub>/flag:other` for each unknown
/// one; positionals are not counted.
pub(crate) fn push_sub_flags(sub: &str, tokens: &[Token<'_>], names: &mut Names) {
    for token in tokens {
        match token {
            Token::Flag { spec, value } => {
                names.push_parts(&[sub, "/flag:", &flag_label(spec, *value)])
            }
            Token::Unknown => names.push_parts(&[sub, "/flag:other"]),
            Token::Positional => {}
        }
    }
}

/// The start of a rustup-proxied tool's vocabulary: `toolchain:<channel>`, then
/// `flag:<label>` for every flag of `table`, then `flag:other`.
pub(crate) fn push_toolchain_and_flag_vocabulary(table: &[FlagSpec], names: &mut Names) {
    for ch in TOOLCHAIN_CHANNELS {
        names.push_parts(&["toolchain:", ch]);
    }
    push_flag_vocabulary(table, names);
}

/// Pushes `flag:<label>` for every name a flag of `table` can be counted under, then
/// `flag:other`: every name [`push_flags`] can push for a flag.
pub(crate) fn push_flag_vocabulary(table: &[FlagSpec], names: &mut Names) {
    for spec in table {
        for label in flag_labels(spec) {
            names.push_parts(&["flag:", &label]);
        }
    }
    names.push("flag:other");
}

/// Pushes `<sub>/flag:<label>` for every name a flag of `table` can be counted under, then
/// `<sub>/flag:other`: every name [`push_sub_flags`] can push.
pub(crate) fn push_sub_flag_vocabulary(sub: &str, table: &[FlagSpec], names: &mut Names) {
    for spec in table {
        for label in flag_labels(spec) {
            names.push_parts(&[sub, "/flag:", &label]);
        }
    }
    names.push_parts(&[sub, "/flag:other"]);
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
        let stop = scan(Dialect::Gnu, &args, TABLE, false, &mut out);
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
