//! `tally view`: the user's own counts as charts, served on 127.0.0.1 or written to one file.
//!
//! Owned by helper "charts"; this is the seam the CLI calls.

use std::path::PathBuf;

/// Options of `tally view`.
#[derive(Debug, Clone, clap::Args)]
pub struct ViewArgs {
    /// Write one self-contained HTML file here instead of serving the charts.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Address to serve on (default: 127.0.0.1 on a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
}

/// Runs `tally view`.
pub fn run(args: &ViewArgs, env: &tally_home::Env) -> anyhow::Result<()> {
    let _ = (args, env);
    anyhow::bail!("`tally view` is not built yet")
}
