//! `tally demo`: a whole collector and client on this machine, in temporary directories.
//!
//! Owned by helper "charts"; this is the seam the CLI calls.

/// Options of `tally demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Keep the temporary directories after the demo ends.
    #[arg(long)]
    pub keep: bool,
    /// Do not try to open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// Stop the server as soon as the demo has run, instead of waiting for Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

/// Runs `tally demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("`tally demo` is not built yet")
}
