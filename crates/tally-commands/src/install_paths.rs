//! Where `tally setup` installs and how a shell finds it: the install and shims directories
//! (`$TALLY_INSTALL_DIR`, else `~/.local/share/tally`) and the PATH line that puts the shims
//! first. `tally setup` writes by them; `tally status` (through the shim report) points at them.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tally_grammar::Tool;
use tally_home::Env;
use tally_sys::FileId;

/// The home directory, which setup needs.
pub(crate) fn home_dir(env: &Env) -> anyhow::Result<PathBuf> {
    env.get(tally_home::env::HOME)
        .map(PathBuf::from)
        .filter(|home| home.is_absolute())
        .context("HOME is not set to an absolute path; tally setup needs a home directory")
}

/// Where setup installs: `$TALLY_INSTALL_DIR`, else `$HOME/.local/share/tally` (install.sh's
/// directory too, so that both agree).
pub(crate) fn install_dir(env: &Env) -> anyhow::Result<PathBuf> {
    if let Some(dir) = env
        .get(tally_home::env::TALLY_INSTALL_DIR)
        .filter(|dir| !dir.is_empty())
    {
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            bail!(
                "TALLY_INSTALL_DIR must be an absolute path, not {}",
                dir.display()
            );
        }
        return Ok(dir);
    }
    Ok(home_dir(env)?.join(".local/share/tally"))
}

/// The shims directory, `<install dir>/bin`.
pub(crate) fn shims_dir(env: &Env) -> anyhow::Result<PathBuf> {
    Ok(install_dir(env)?.join("bin"))
}

/// Setup's shims directory, if it holds one of tally's binaries (`is_ours`) under a tool's name
/// (what `tally status` points at when the shims are on no PATH at all).
pub(crate) fn installed_shims_dir(env: &Env, is_ours: &dyn Fn(FileId) -> bool) -> Option<PathBuf> {
    let dir = shims_dir(env).ok()?;
    Tool::ALL
        .iter()
        .any(|tool| FileId::of_target(&dir.join(tool.name())).is_some_and(is_ours))
        .then_some(dir)
}

/// The shell line that puts `dir` first on PATH, for sh, bash and zsh:
/// `export PATH="$HOME/.local/share/tally/bin:$PATH"` (the home directory spelled `$HOME`, so
/// the line survives a renamed home).
pub(crate) fn path_line(dir: &Path, env: &Env) -> anyhow::Result<String> {
    let shown = match home_dir(env).ok().and_then(|home| {
        dir.strip_prefix(&home)
            .ok()
            .map(|rest| rest.to_string_lossy().into_owned())
    }) {
        Some(rest) if rest.is_empty() => "$HOME".to_string(),
        Some(rest) => format!("$HOME/{}", double_quoted(&rest)),
        None => double_quoted(&dir.to_string_lossy()),
    };
    let text = dir.to_str().with_context(|| {
        format!(
            "the shims directory {} is not UTF-8; set TALLY_INSTALL_DIR to a plain path",
            dir.display()
        )
    })?;
    if text.contains(['\n', '\r', ':']) {
        bail!(
            "the shims directory {text:?} has a newline or a colon, which a PATH cannot hold; \
             set TALLY_INSTALL_DIR to a plain path"
        );
    }
    Ok(format!("export PATH=\"{shown}:$PATH\""))
}

/// `text` escaped for the inside of a double-quoted shell word.
fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_spells_home_and_quotes_the_rest() {
        let env = Env::from_strs(&[("HOME", "/home/a")]);
        assert_eq!(
            path_line(Path::new("/home/a/.local/share/tally/bin"), &env).unwrap(),
            r#"export PATH="$HOME/.local/share/tally/bin:$PATH""#
        );
        assert_eq!(
            path_line(Path::new("/opt/my $dir/\"x`\\/bin"), &env).unwrap(),
            r#"export PATH="/opt/my \$dir/\"x\`\\/bin:$PATH""#
        );
        assert!(path_line(Path::new("/opt/a:b/bin"), &env).is_err());
        assert!(path_line(Path::new("/opt/a\nb/bin"), &env).is_err());
    }
}
