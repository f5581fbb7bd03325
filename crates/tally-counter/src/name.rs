//! The rule counter names follow, checked by `const fn` so that a name written in the source is
//! checked when the tool compiles ([`counter!`](crate::counter!)), and checked again at run time
//! against the program the process opened, always: a name that breaks it is counted as
//! `<program>/other`, never stored, and never a panic.
//!
//! A counter name is `<program>/<path>` or `<program>/<path>:<bucket>`:
//! - `<program>`: the tool's program name ([`tally_protocol::is_program_name`]: 1 to 64
//!   lowercase ASCII letters, digits, `-`, `_`); at run time it must be the program the
//!   process opened (its Cargo package name);
//! - `<path>`: one or more `/`-separated segments, each 1 to [`MAX_PART_LEN`] bytes of
//!   lowercase ASCII letters, digits, `-` and `_`;
//! - `<bucket>`: 1 to [`MAX_PART_LEN`] bytes of the same alphabet, where one `.` may also stand
//!   between two digits (`0.1`, `1.2`), optionally after `<` or `>=` (a histogram bucket, as Go
//!   names them: `<0.1s`, `>=60s`); or a short flag, `-` and one ASCII letter or digit (`-V`);
//! - at most [`MAX_NAME_LEN`] bytes in all.
//!
//! The alphabet is the point: capitals, dots between letters (or more than one), spaces, `@`,
//! `=`, `~`, `\`, `//` and anything over 32 bytes in one part are refused, which is what paths (`/home/…`,
//! `main.rs`), URLs, e-mail addresses, `KEY=value` pairs, mixed-case or long tokens and
//! sentences are made of. A short lowercase word is still a valid name whatever it came from:
//! the first rule is that names are literals in the tool's source, which the `'static` names
//! of [`Counter`](crate::Counter) and the compile-time check of the macros keep.

/// Longest counter name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest path segment or bucket of a counter name, in bytes.
pub const MAX_PART_LEN: usize = 32;

/// Why a counter name breaks the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Empty, or longer than [`MAX_NAME_LEN`].
    Length,
    /// The part before the first `/` is not a program name.
    Program,
    /// A path segment is empty, too long, or has a byte outside `[a-z0-9_-]`.
    Segment,
    /// The part after `:` is not a bucket.
    Bucket,
}

impl NameError {
    /// What the rule says, in one sentence (also the compile-time error of the macros).
    pub const fn message(self) -> &'static str {
        match self {
            NameError::Length => "a counter name is 1 to 128 bytes",
            NameError::Program => {
                "a counter name starts with the program name (lowercase ASCII letters, digits, `-`, `_`) and a `/`"
            }
            NameError::Segment => {
                "each `/`-separated part of a counter name is 1 to 32 lowercase ASCII letters, digits, `-` or `_`"
            }
            NameError::Bucket => {
                "the part after `:` is 1 to 32 lowercase ASCII letters, digits, `-`, `_` (and one `.` between digits), optionally after `<` or `>=`, or a short flag like `-V`"
            }
        }
    }
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for NameError {}

const fn is_word_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// Checks `name` against the rule (whatever its program). A `const fn`: in a `const` context
/// it runs when the tool compiles.
pub const fn check_counter_name(name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return Err(NameError::Length);
    }
    // The program, up to the first `/`.
    let mut slash = 0;
    while slash < b.len() && b[slash] != b'/' {
        slash += 1;
    }
    if slash == b.len() {
        return Err(NameError::Program);
    }
    let (program, _) = b.split_at(slash);
    match std::str::from_utf8(program) {
        Ok(p) if tally_protocol::is_program_name(p) => {}
        _ => return Err(NameError::Program),
    }
    // Path segments, up to the first `:`.
    let mut i = slash + 1;
    let mut segment_len = 0;
    while i < b.len() && b[i] != b':' {
        if b[i] == b'/' {
            if segment_len == 0 {
                return Err(NameError::Segment);
            }
            segment_len = 0;
        } else if is_word_byte(b[i]) && segment_len < MAX_PART_LEN {
            segment_len += 1;
        } else {
            return Err(NameError::Segment);
        }
        i += 1;
    }
    if segment_len == 0 {
        return Err(NameError::Segment);
    }
    if i == b.len() {
        return Ok(());
    }
    let (_, bucket) = b.split_at(i + 1);
    if is_bucket_bytes(bucket) {
        Ok(())
    } else {
        Err(NameError::Bucket)
    }
}

/// Whether `name` follows the rule (see [`check_counter_name`]).
pub const fn is_counter_name(name: &str) -> bool {
    check_counter_name(name).is_ok()
}

/// Whether `name` follows the rule and belongs to `program`: it starts with `<program>/`.
pub fn is_counter_name_of(program: &str, name: &str) -> bool {
    name.strip_prefix(program)
        .is_some_and(|rest| rest.starts_with('/'))
        && is_counter_name(name)
}

/// Whether `label` may follow a `:` in a counter name (see the module's rule).
pub const fn is_bucket(label: &str) -> bool {
    is_bucket_bytes(label.as_bytes())
}

const fn is_bucket_bytes(b: &[u8]) -> bool {
    if b.len() == 2 && b[0] == b'-' && b[1].is_ascii_alphanumeric() {
        return true;
    }
    let start = if !b.is_empty() && b[0] == b'<' {
        1
    } else if b.len() >= 2 && b[0] == b'>' && b[1] == b'=' {
        2
    } else {
        0
    };
    let len = b.len() - start;
    if len == 0 || len > MAX_PART_LEN {
        return false;
    }
    let mut i = start;
    let mut dots = 0;
    while i < b.len() {
        let c = b[i];
        let dot = c == b'.'
            && i > start
            && i + 1 < b.len()
            && b[i - 1].is_ascii_digit()
            && b[i + 1].is_ascii_digit();
        if dot {
            dots += 1;
        }
        if !(is_word_byte(c) || dot) || dots > 1 {
            return false;
        }
        i += 1;
    }
    true
}

/// Compile-time check behind the macros: panics (a compile error in a `const`) with the rule's
/// sentence when `name` breaks it.
#[doc(hidden)]
pub const fn __assert_counter_name(name: &str) {
    if let Err(e) = check_counter_name(name) {
        panic!("{}", e.message());
    }
}

/// Compile-time check of a histogram's name: a counter name without a bucket.
#[doc(hidden)]
pub const fn __assert_histogram_name(name: &str) {
    __assert_counter_name(name);
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b':' {
            panic!("a histogram's name has no `:`; its buckets are added after one");
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_shapes_tools_use() {
        for name in [
            "greet/invocations",
            "greet/hello",
            "greet/flag:--loud",
            "greet/flag:-v",
            "greet/flag:-V",
            "greet/hello/flag:--times",
            "greet/subcommand:hello",
            "greet/time:<0.1s",
            "greet/time:<1s",
            "greet/time:>=60s",
            "greet/size:<1024",
            "cargo-nextest/run/flag:--no-fail-fast",
            "greet/version:1.2",
            "x/y",
        ] {
            assert_eq!(check_counter_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_what_values_look_like() {
        for (name, why) in [
            ("", NameError::Length),
            ("greet", NameError::Program),
            ("/home/alice/notes.txt", NameError::Program),
            ("Greet/x", NameError::Program),
            ("greet//home/alice", NameError::Segment),
            ("greet/", NameError::Segment),
            ("greet/main.rs", NameError::Segment),
            ("greet/Alice", NameError::Segment),
            ("greet/a b", NameError::Segment),
            ("greet/alice@example.com", NameError::Segment),
            ("greet/x:", NameError::Bucket),
            ("greet/flag:main.rs", NameError::Bucket),
            ("greet/flag:API_KEY=abc", NameError::Bucket),
            ("greet/flag:AKIAIOSFODNN7EXAMPLE", NameError::Bucket),
            ("greet/flag:-Vv", NameError::Bucket),
            ("greet/flag:~/x", NameError::Bucket),
            ("greet/flag:a:b", NameError::Bucket),
            ("greet/flag:{a,b}", NameError::Bucket),
            ("greet/x:.5", NameError::Bucket),
            ("greet/x:5.", NameError::Bucket),
            ("greet/ip:10.0.0.1", NameError::Bucket),
            ("greet/version:1.2.3", NameError::Bucket),
            (
                "greet/flag:3f786850e387550fdab836ed7e6dc881de23001b",
                NameError::Bucket,
            ),
            (
                "greet/3f786850e387550fdab836ed7e6dc881de23001b",
                NameError::Segment,
            ),
        ] {
            assert_eq!(check_counter_name(name), Err(why), "{name}");
        }
        let long = format!("greet/{}", ["abcdefgh"; 16].join("/"));
        assert_eq!(check_counter_name(&long), Err(NameError::Length));
    }

    #[test]
    fn a_name_belongs_to_its_program_only() {
        assert!(is_counter_name_of("greet", "greet/hello"));
        assert!(!is_counter_name_of("greet", "greeter/hello"));
        assert!(!is_counter_name_of("greeter", "greet/hello"));
        assert!(!is_counter_name_of("greet", "cargo/invocations"));
    }

    /// What makes `counter!("greet/Notes.txt")` a compile error: the same check, run now.
    #[test]
    fn the_macros_check_refuses_with_the_rule() {
        let caught = std::panic::catch_unwind(|| __assert_counter_name("greet/Notes.txt"));
        let message = *caught.unwrap_err().downcast::<String>().unwrap();
        assert_eq!(message, NameError::Segment.message());
        assert!(std::panic::catch_unwind(|| __assert_histogram_name("greet/time:x")).is_err());
    }

    // Checked when this crate compiles.
    const _: () = __assert_counter_name("greet/time:<0.1s");
    const _: () = __assert_histogram_name("greet/time");
}
