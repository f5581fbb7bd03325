//! `tally status`.

use std::process::ExitCode;

use tally_home::Env;

use crate::{Io, StatusArgs};

pub(crate) fn run(_args: &StatusArgs, _env: &Env, _io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tally status` is not built yet")
}
