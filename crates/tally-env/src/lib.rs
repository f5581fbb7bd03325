//! The single registry of every environment variable tally reads, in the spirit of uv's
//! `EnvVars`: each is declared once here, with what it means and which part of tally reads it.
//!
//! - [`VARS`]: the product's variables, the ones users and collectors set (and other programs'
//!   variables tally reads, such as `PATH`), listed by `tally status --help`;
//! - [`SERVER_VARS`]: those `tally-server` reads;
//! - [`TEST_VARS`] and [`BUILD_VARS`]: switches for the test suite and the release build, kept
//!   apart so that no user mistakes them for settings.
//!
//! `docs/environment.md` is generated from these tables ([`reference_markdown`]; a test keeps it
//! in step). Code reads the environment only through [`var_os`] (or, on the hot path, the
//! process's one copy of it, `tally_home::env::ProcessEnv`): `clippy.toml` forbids `std::env::var`
//! and its siblings everywhere else, so a variable cannot be read without being declared.
//!
//! Promises: no I/O but reading the environment; no dependencies.

use std::ffi::{OsStr, OsString};

/// One environment variable tally reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// What it means.
    pub meaning: &'static str,
    /// Which part of tally reads it.
    pub read_by: &'static str,
}

/// `TALLY`: `off` or `local` lowers the mode for this process.
pub const TALLY: &str = "TALLY";
/// `DO_NOT_TRACK`: any value but empty, `0` or `false` means off.
pub const DO_NOT_TRACK: &str = "DO_NOT_TRACK";
/// `TALLY_DIR`: the data directory.
pub const TALLY_DIR: &str = "TALLY_DIR";
/// `XDG_STATE_HOME`: the state directory (data under `tally/`).
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
/// `HOME`: the home directory (data under `.local/state/tally`).
pub const HOME: &str = "HOME";
/// `TALLY_INSTALL_DIR`: where `tally setup` and install.sh put the shims (its `bin/`).
pub const TALLY_INSTALL_DIR: &str = "TALLY_INSTALL_DIR";
/// `TALLY_NOW`: clock override.
pub const TALLY_NOW: &str = "TALLY_NOW";
/// `TALLY_FORCE_ARG0`: which tool the shim pretends to be (tests).
pub const TALLY_FORCE_ARG0: &str = "TALLY_FORCE_ARG0";
/// `TALLY_DEBUG_UPLOAD`: print what would be uploaded and send nothing.
pub const TALLY_DEBUG_UPLOAD: &str = "TALLY_DEBUG_UPLOAD";
/// `TALLY_ALLOW_CI_UPLOAD`: allow uploads from CI.
pub const TALLY_ALLOW_CI_UPLOAD: &str = "TALLY_ALLOW_CI_UPLOAD";
/// `CI`: generic CI marker.
pub const CI: &str = "CI";
/// `TALLY_NEXT_WRAPPER`: the user's own `RUSTC_WRAPPER`, kept by the cargo shim.
pub const TALLY_NEXT_WRAPPER: &str = "TALLY_NEXT_WRAPPER";
/// `TALLY_SHIM_GUARD`: loop guard set by the shims.
pub const TALLY_SHIM_GUARD: &str = "TALLY_SHIM_GUARD";
/// `TALLY_REQUIRE_GO`: tests fail instead of skipping without Go.
pub const TALLY_REQUIRE_GO: &str = "TALLY_REQUIRE_GO";
/// `TALLY_REQUIRE_CHROMIUM`: tests fail instead of skipping without Chromium.
pub const TALLY_REQUIRE_CHROMIUM: &str = "TALLY_REQUIRE_CHROMIUM";
/// `TALLY_REQUIRE_S3`: tests fail instead of skipping without the S3 server.
pub const TALLY_REQUIRE_S3: &str = "TALLY_REQUIRE_S3";
/// `TALLY_REQUIRE_MINISIGN`: tests fail instead of skipping without `minisign`.
pub const TALLY_REQUIRE_MINISIGN: &str = "TALLY_REQUIRE_MINISIGN";
/// `TALLY_REQUIRE_STRACE`: tests fail instead of skipping without `strace`.
pub const TALLY_REQUIRE_STRACE: &str = "TALLY_REQUIRE_STRACE";
/// `TALLY_REQUIRE_SHELLS`: tests fail instead of skipping without zsh, fish, groff or man.
pub const TALLY_REQUIRE_SHELLS: &str = "TALLY_REQUIRE_SHELLS";
/// `TALLY_RELEASE_KIND`: build time only, see [`VARS`].
pub const TALLY_RELEASE_KIND: &str = "TALLY_RELEASE_KIND";

/// `TALLY_BLESS_DOCS`: tests rewrite generated docs instead of failing.
pub const TALLY_BLESS_DOCS: &str = "TALLY_BLESS_DOCS";
/// `TALLY_SERVER_KEY_PASSWORD`: the password of tally-server's encrypted signing key.
pub const TALLY_SERVER_KEY_PASSWORD: &str = "TALLY_SERVER_KEY_PASSWORD";
/// `AWS_ENDPOINT_URL`: the S3-compatible endpoint of an `s3://` store.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// `AWS_REGION`: the region of an `s3://` store.
pub const AWS_REGION: &str = "AWS_REGION";
/// `AWS_DEFAULT_REGION`: the region of an `s3://` store when `AWS_REGION` is unset.
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// `TALLY_BLESS_SCHEMAS`: tests rewrite the JSON Schemas in `config-schema/` instead of failing.
pub const TALLY_BLESS_SCHEMAS: &str = "TALLY_BLESS_SCHEMAS";
/// `TALLY_BLESS_SCREENSHOTS`: browser tests rewrite the committed `docs/screenshots/`.
pub const TALLY_BLESS_SCREENSHOTS: &str = "TALLY_BLESS_SCREENSHOTS";

/// CI vendors' own markers (any non-empty value means "running in CI").
pub const CI_VENDOR_VARS: &[&str] = &[
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "TF_BUILD",
    "BUILDKITE",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "TEAMCITY_VERSION",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ID",
    "DRONE",
    "SEMAPHORE",
    "BUILDKITE_BUILD_ID",
    "CF_BUILD_ID",
    "WOODPECKER",
];

/// The product's variables: what users set, and other programs' variables the client reads.
pub const VARS: &[EnvVar] = &[
    EnvVar {
        name: TALLY,
        meaning: "`off` stops all counting and writing for this process; `local` keeps counting but uploads nothing. It can only lower the stored mode: turning uploads on takes `tally on`.",
        read_by: "shims, wrapper, cli, tally-counter",
    },
    EnvVar {
        name: DO_NOT_TRACK,
        meaning: "Any value other than empty, `0` or `false` means off (consoledonottrack.com).",
        read_by: "shims, wrapper, cli, tally-counter",
    },
    EnvVar {
        name: TALLY_DIR,
        meaning: "Data directory (absolute path). Default: $XDG_STATE_HOME/tally, else $HOME/.local/state/tally. A relative path means no data directory: nothing is counted.",
        read_by: "shims, wrapper, cli, tally-counter",
    },
    EnvVar {
        name: XDG_STATE_HOME,
        meaning: "State directory; tally keeps its data in its `tally/` subdirectory. Ignored unless absolute.",
        read_by: "shims, wrapper, cli, tally-counter",
    },
    EnvVar {
        name: HOME,
        meaning: "Home directory; data defaults to $HOME/.local/state/tally. Unset and no other directory: tally counts nothing.",
        read_by: "shims, wrapper, cli, tally-counter",
    },
    EnvVar {
        name: TALLY_INSTALL_DIR,
        meaning: "Where `tally setup` puts the shims, in its `bin/` subdirectory, and where install.sh puts the binaries (absolute path). Default: $HOME/.local/share/tally.",
        read_by: "cli (setup, status), install.sh",
    },
    EnvVar {
        name: TALLY_NOW,
        meaning: "Clock override for tests and demos: YYYY-MM-DD or an RFC 3339 time (taken in UTC).",
        read_by: "shims, wrapper, cli, tally-counter",
    },
    EnvVar {
        name: TALLY_DEBUG_UPLOAD,
        meaning: "Print what an upload would send, and send nothing.",
        read_by: "cli (upload)",
    },
    EnvVar {
        name: TALLY_ALLOW_CI_UPLOAD,
        meaning: "Allow uploading from a CI environment (by default CI machines never upload).",
        read_by: "cli (upload)",
    },
    EnvVar {
        name: CI,
        meaning: "Set to anything but empty, `0` or `false` on CI machines; with the vendor variables (GITHUB_ACTIONS, GITLAB_CI, TF_BUILD, ...) it marks a CI run.",
        read_by: "shims (upload trigger), cli (upload)",
    },
    EnvVar {
        name: TALLY_NEXT_WRAPPER,
        meaning: "Marker set by the cargo shim: the user's own RUSTC_WRAPPER, which the wrapper runs next. Removed before the real tool runs.",
        read_by: "wrapper",
    },
    EnvVar {
        name: TALLY_SHIM_GUARD,
        meaning: "Marker set by the shims: `<pid>:<tool>:<n>`, counting shim runs exec'd within one process, to stop a loop through another shim manager (exit 127). Holds only a process ID, which tools ignore.",
        read_by: "shims",
    },
    // Other programs' variables the shims and the wrapper read (never write to any file).
    EnvVar {
        name: "PATH",
        meaning: "Where the shims look for the real tool (the first one that is not tally itself).",
        read_by: "shims, wrapper, cli (status)",
    },
    EnvVar {
        name: "RUSTC_WRAPPER",
        meaning: "The user's rustc wrapper: kept by the cargo shim (in TALLY_NEXT_WRAPPER) and run after tally; empty means none.",
        read_by: "shims (cargo), wrapper, cli (status)",
    },
    EnvVar {
        name: "CARGO_BUILD_RUSTC_WRAPPER",
        meaning: "cargo's config variable for the rustc wrapper; kept like RUSTC_WRAPPER.",
        read_by: "shims (cargo)",
    },
    EnvVar {
        name: "CARGO_HOME",
        meaning: "Where cargo's own config.toml is (for `build.rustc-wrapper`); default ~/.cargo.",
        read_by: "shims (cargo)",
    },
    EnvVar {
        name: "RUSTUP_TOOLCHAIN",
        meaning: "The toolchain a rustup proxy runs; tally reads it to record that toolchain's version.",
        read_by: "shims, wrapper",
    },
    EnvVar {
        name: "RUSTUP_HOME",
        meaning: "Where rustup keeps toolchains and settings.toml; default ~/.rustup.",
        read_by: "shims, wrapper",
    },
    EnvVar {
        name: "CARGO_CRATE_NAME",
        meaning: "Only whether it is set: cargo sets it for the rustc runs that compile a crate (rustc/caller:cargo).",
        read_by: "shims (rustc), wrapper",
    },
    EnvVar {
        name: "CARGO_CFG_TARGET_ARCH",
        meaning: "Only whether it is set: cargo sets CARGO_CFG_* for build scripts only (rustc/caller:build-script).",
        read_by: "shims (rustc), wrapper",
    },
    EnvVar {
        name: "CARGO",
        meaning: "Only whether it is set: cargo sets it for what it runs (rustc/caller:cargo).",
        read_by: "shims (rustc), wrapper",
    },
];

/// The variables `tally-server` reads (`TALLY_NOW` is shared with the client, above).
pub const SERVER_VARS: &[EnvVar] = &[
    EnvVar {
        name: TALLY_SERVER_KEY_PASSWORD,
        meaning: "The password of the encrypted signing key (`tally-server keygen`, `sign`); unset or empty: the key is not encrypted, or `--no-password`.",
        read_by: "tally-server (keygen, sign)",
    },
    EnvVar {
        name: TALLY_NOW,
        meaning: "Clock override for tests and demos: YYYY-MM-DD or an RFC 3339 time (UTC); decides the current week the server accepts and merges, and for the DAP aggregators the time reports, key grace periods and the replay horizon are measured against.",
        read_by: "tally-server (serve, dap leader|helper)",
    },
    EnvVar {
        name: AWS_ENDPOINT_URL,
        meaning: "With an `s3://` store: the S3-compatible endpoint (MinIO, moto, ...); the other `AWS_*` credentials are read by the object_store crate.",
        read_by: "tally-server (s3 store)",
    },
    EnvVar {
        name: AWS_REGION,
        meaning: "With an `s3://` store: the region; when neither it nor AWS_DEFAULT_REGION is set, `us-east-1`.",
        read_by: "tally-server (s3 store)",
    },
    EnvVar {
        name: AWS_DEFAULT_REGION,
        meaning: "With an `s3://` store: the region when AWS_REGION is not set.",
        read_by: "tally-server (s3 store)",
    },
];

/// Switches of the test suite: never read by the product, except [`TALLY_FORCE_ARG0`], the test
/// hook that makes the binary act as a shim whatever its name (as rustup's
/// `RUSTUP_FORCE_ARG0`).
pub const TEST_VARS: &[EnvVar] = &[
    EnvVar {
        name: TALLY_FORCE_ARG0,
        meaning: "Makes the binary act as the shim of this tool name, whatever argv[0] is (tests).",
        read_by: "shims",
    },
    EnvVar {
        name: TALLY_REQUIRE_GO,
        meaning: "Tests only: `1` makes tests that need Go fail instead of skipping when `go` is missing.",
        read_by: "tests",
    },
    EnvVar {
        name: TALLY_REQUIRE_CHROMIUM,
        meaning: "Tests only: `1` makes tests that need Chromium fail instead of skipping.",
        read_by: "tests",
    },
    EnvVar {
        name: TALLY_REQUIRE_S3,
        meaning: "Tests only: `1` makes tests that need the S3-compatible server fail instead of skipping.",
        read_by: "tests",
    },
    EnvVar {
        name: TALLY_REQUIRE_MINISIGN,
        meaning: "Tests only: `1` makes tests that need the `minisign` tool fail instead of skipping.",
        read_by: "tests",
    },
    EnvVar {
        name: TALLY_REQUIRE_STRACE,
        meaning: "Tests only: `1` makes the test that traces the installed shim's system calls fail instead of skipping when `strace` is missing.",
        read_by: "tests",
    },
    EnvVar {
        name: TALLY_REQUIRE_SHELLS,
        meaning: "Tests only: `1` makes the completion and man page tests fail instead of skipping a check when zsh, fish, groff or man is missing.",
        read_by: "tests",
    },
    EnvVar {
        name: TALLY_BLESS_DOCS,
        meaning: "Tests only: `1` rewrites docs/environment.md from this registry instead of failing when it is out of date.",
        read_by: "tests (tally-env)",
    },
    EnvVar {
        name: TALLY_BLESS_SCHEMAS,
        meaning: "Tests only: `1` rewrites the JSON Schemas in config-schema/ from the protocol types instead of failing when they differ.",
        read_by: "tests (tally-protocol)",
    },
    EnvVar {
        name: TALLY_BLESS_SCREENSHOTS,
        meaning: "Tests only: `1` makes the browser tests write their screenshots to the committed docs/screenshots/ instead of `<target>/tmp/screenshots/`, which they use otherwise so that a test run leaves the work tree clean.",
        read_by: "tests (tally-commands demo, tally-server dashboard)",
    },
];

/// Switches of the release build (scripts/release-build.sh), read by no binary.
pub const BUILD_VARS: &[EnvVar] = &[EnvVar {
    name: TALLY_RELEASE_KIND,
    meaning: "Build time only: `musl`, `static-glibc` or `dynamic` builds the release binary of that kind only, failing if it cannot. Unset: the first of the three that builds and runs (scripts/release-build.sh).",
    read_by: "scripts/release-build.sh",
}];

/// True for the values that mean "set": anything but empty, `0` or `false` (any case).
pub fn is_truthy(value: &OsStr) -> bool {
    let v = value.to_string_lossy();
    let v = v.trim();
    !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false"))
}

/// Every table, for lookups and the docs: (title, variables).
pub const TABLES: &[(&str, &[EnvVar])] = &[
    ("The client (`tally`, its shims and the wrapper)", VARS),
    ("The collector (`tally-server`)", SERVER_VARS),
    ("Tests only", TEST_VARS),
    ("Build only", BUILD_VARS),
];

/// Whether `name` is declared in any table (or is a CI vendor marker).
pub fn is_declared(name: &str) -> bool {
    TABLES
        .iter()
        .flat_map(|(_, vars)| vars.iter())
        .any(|v| v.name == name)
        || CI_VENDOR_VARS.contains(&name)
}

/// Reads `name` from the process environment: the one place outside the hot path's copy of the
/// environment where tally calls `std::env::var_os`. `name` must be declared here (checked in
/// debug builds), so that the docs list every variable that changes what tally does.
pub fn var_os(name: &str) -> Option<OsString> {
    debug_assert!(is_declared(name), "{name} is not declared in tally-env");
    #[allow(clippy::disallowed_methods)] // The one permitted reader, see the module docs.
    std::env::var_os(name)
}

/// Every variable of the process environment, as `(name, value)` (the demo copies the
/// user's toolchain variables into its own world by name).
pub fn vars_os() -> impl Iterator<Item = (OsString, OsString)> {
    #[allow(clippy::disallowed_methods)] // The one permitted reader, see the module docs.
    std::env::vars_os()
}

/// The reference page `docs/environment.md`, generated from the tables above.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Environment variables\n\n\
         Generated from `crates/tally-env/src/lib.rs`, the single registry of every variable tally \
         reads (`cargo test -p tally-env` checks that this page is up to date; \
         `TALLY_BLESS_DOCS=1 cargo test -p tally-env` rewrites it).\n",
    );
    for (title, vars) in TABLES {
        out.push_str(&format!(
            "\n## {title}\n\n| variable | meaning | read by |\n| --- | --- | --- |\n"
        ));
        for var in *vars {
            out.push_str(&format!(
                "| `{}` | {} | {} |\n",
                var.name,
                var.meaning.replace('|', "\\|"),
                var.read_by
            ));
        }
    }
    out.push_str("\nCI vendors' markers (any non-empty value means a CI run): ");
    let names: Vec<String> = CI_VENDOR_VARS.iter().map(|n| format!("`{n}`")).collect();
    out.push_str(&names.join(", "));
    out.push_str(".\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_declared_once() {
        let mut names: Vec<&str> = TABLES
            .iter()
            .flat_map(|(_, vars)| vars.iter().map(|v| v.name))
            .filter(|n| *n != TALLY_NOW) // shared by the client and the server, on purpose
            .chain(CI_VENDOR_VARS.iter().copied())
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a variable is declared twice");
    }

    #[test]
    fn every_meaning_is_a_sentence_and_names_its_reader() {
        for (_, vars) in TABLES {
            for var in *vars {
                assert!(
                    var.meaning.ends_with('.') || var.meaning.ends_with(')'),
                    "{}",
                    var.name
                );
                assert!(!var.read_by.is_empty(), "{}", var.name);
            }
        }
    }

    #[test]
    fn truthy_values() {
        for v in ["1", "true", "yes", "anything"] {
            assert!(is_truthy(OsStr::new(v)), "{v}");
        }
        for v in ["", "0", "false", "FALSE", " 0 "] {
            assert!(!is_truthy(OsStr::new(v)), "{v:?}");
        }
    }

    /// `docs/environment.md` is what [`reference_markdown`] generates.
    #[test]
    fn the_reference_page_is_up_to_date() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/environment.md");
        let generated = reference_markdown();
        if var_os(TALLY_BLESS_DOCS).is_some_and(|v| v == "1") {
            std::fs::write(&path, &generated).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/environment.md is out of date: run `TALLY_BLESS_DOCS=1 cargo test -p tally-env`"
        );
    }
}
