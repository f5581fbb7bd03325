//! install.sh for one user in a temporary HOME: idempotent, marked profile edits, a clean
//! uninstall, and --purge. Uses the already built binary (`--binary`) to skip the release build.

use std::path::Path;
use std::process::Command;

use crate::util::{TALLY, TOOLS, ok, run};

fn install_sh(home: &Path, args: &[&str]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap());
    run(&mut cmd)
}

#[test]
fn install_twice_modify_path_uninstall_purge() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let original_profile = "# my profile\nexport EDITOR=vi\n";
    std::fs::write(home.join(".profile"), original_profile).unwrap();
    std::fs::write(home.join(".bashrc"), "alias ll='ls -l'\n").unwrap();

    for _ in 0..2 {
        let out = install_sh(home, &["--binary", TALLY, "--modify-path", "--no-demo"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(".local/share/tally/bin:$PATH"), "{stdout}");
    }
    let install_dir = home.join(".local/share/tally");
    let bin = install_dir.join("bin");
    for tool in TOOLS.iter().chain(&["tally"]) {
        let link = bin.join(tool);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            install_dir.join("tally"),
            "{tool}"
        );
    }
    for profile in [".profile", ".bashrc"] {
        let text = std::fs::read_to_string(home.join(profile)).unwrap();
        assert_eq!(
            text.matches(">>> tally shims").count(),
            1,
            "{profile}: {text}"
        );
    }
    // The installed shim works and counts.
    let data = home.join("data");
    let mut path = vec![bin.clone()];
    path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
    let out = ok(Command::new(bin.join("rustc"))
        .arg("-V")
        .env("PATH", std::env::join_paths(path).unwrap())
        .env("TALLY_DIR", &data));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rustc "));
    assert!(data.join("counters").read_dir().unwrap().count() == 1);

    // Uninstall removes what it installed and only that; purge takes the data.
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
        .arg("--purge")
        .env_clear()
        .env("HOME", home)
        .env("TALLY_DIR", &data)
        .env("PATH", std::env::var_os("PATH").unwrap());
    ok(&mut cmd);
    assert!(!install_dir.exists());
    assert!(!data.exists());
    assert_eq!(
        std::fs::read_to_string(home.join(".profile")).unwrap(),
        original_profile
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".bashrc")).unwrap(),
        "alias ll='ls -l'\n"
    );
    // Uninstalling again is harmless.
    assert!(install_sh(home, &["--uninstall"]).status.success());
}

#[test]
fn purge_refuses_a_directory_that_is_not_tallys() {
    let tmp = tempfile::tempdir().unwrap();
    let precious = tmp.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("thesis.tex"), "...").unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
        .arg("--purge")
        .env_clear()
        .env("HOME", tmp.path())
        .env("TALLY_DIR", &precious)
        .env("PATH", std::env::var_os("PATH").unwrap());
    let out = run(&mut cmd);
    assert!(!out.status.success());
    assert!(precious.join("thesis.tex").exists());
}
