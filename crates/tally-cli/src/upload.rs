//! `tally upload`.

use std::process::ExitCode;

use tally_home::Env;

use crate::{Io, UploadArgs};

pub(crate) fn run(_args: &UploadArgs, _env: &Env, _io: &mut Io<'_>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tally upload` is not built yet")
}
