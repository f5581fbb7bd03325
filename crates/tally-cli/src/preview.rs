//! `tally preview`.

use std::process::ExitCode;

use tally_home::Env;

use crate::Io;

pub(crate) fn run(_env: &Env, _io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tally preview` is not built yet")
}
