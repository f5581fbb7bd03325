#!/usr/bin/env bash
# Installs tally for the current user, without root.
#
#   ./install.sh [--modify-path] [--no-demo] [--binary PATH] [--server-binary PATH]
#   ./install.sh --uninstall [--purge]
#
# What it installs (and all that --uninstall removes):
#   $TALLY_INSTALL_DIR (default ~/.local/share/tally)/tally  the CLI
#   $TALLY_INSTALL_DIR/tally-shim     the hot path: what the shims and RUSTC_WRAPPER run
#   $TALLY_INSTALL_DIR/tally-server   the collector (demo, self-hosting)
# and then runs `tally setup`, which makes (and `tally setup --uninstall` removes):
#   $TALLY_INSTALL_DIR/bin/{cargo,rustc,rustfmt,cargo-fmt,go,gofmt}
#                                                        links to tally-shim: the shims
#   $TALLY_INSTALL_DIR/bin/tally                         a link to tally
#   with --modify-path, one marked line at the end of ~/.profile, ~/.bashrc and ~/.zshrc (those
#   present, ~/.profile always) that puts the shims directory first on PATH.
# --purge also deletes tally's data directory ($TALLY_DIR, else $XDG_STATE_HOME/tally, else
# ~/.local/state/tally), unless it holds anything that is not tally's. Running it again is
# harmless: every step replaces what it made. Without --no-demo it ends with `tally demo`.
#
# The binaries are built by scripts/release-build.sh: `cargo build --release`, static and not
# position-independent (with Rust's musl target where it is installed, else static glibc, else a
# normal build; the script says why). The shim runs on every compile, and such a binary skips
# the dynamic loader and its relocations (bench/README.md, "Techniques"). The price is that
# tally's own code and data sit at a fixed address (stack, heap and mappings are still
# randomised). --binary PATH installs an already built
# tally instead, and the tally-shim beside it (packagers, tests), --server-binary PATH likewise
# for tally-server.
#
# Everything after the build is `tally setup`'s (one implementation, also what users of
# `cargo install` run); this script only builds, copies the binaries and calls it.
set -euo pipefail

install_dir=${TALLY_INSTALL_DIR:-$HOME/.local/share/tally}
# `tally setup` finds the same directory through this variable.
export TALLY_INSTALL_DIR=$install_dir
bin_dir=$install_dir/bin

modify_path=0 uninstall=0 purge=0 demo=1 binary="" server_binary=""
usage() { sed -n '2,32s/^# \{0,1\}//p' "$0"; }
while (($#)); do
    case $1 in
        --modify-path) modify_path=1 ;;
        --uninstall) uninstall=1 ;;
        --purge) purge=1 uninstall=1 ;;
        --no-demo) demo=0 ;;
        --binary) binary=${2:?--binary needs the path of a built tally}; shift ;;
        --server-binary) server_binary=${2:?--server-binary needs the path of a built tally-server}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see ./install.sh --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'install.sh: %s\n' "$*"; }

if ((uninstall)); then
    # The installed binary undoes what its setup made; without one, a tally on PATH does.
    tally=$install_dir/tally
    [[ -x $tally ]] || tally=$(command -v tally || true)
    if [[ -z $tally ]]; then
        if ((purge)); then
            echo "install.sh: no tally binary in $install_dir or on PATH to check and delete the data directory with; delete it yourself" >&2
            exit 1
        fi
        say "tally is not installed in $install_dir: nothing to uninstall"
        exit 0
    fi
    args=(--uninstall)
    ((purge)) && args+=(--purge)
    "$tally" setup "${args[@]}"
    if [[ -e $install_dir/tally || -e $install_dir/tally-shim || -e $install_dir/tally-server ]]; then
        rm -f "$install_dir/tally" "$install_dir/tally-shim" "$install_dir/tally-server"
        say "removed the binaries from $install_dir"
    fi
    rmdir "$install_dir" 2>/dev/null || true
    exit 0
fi

if [[ -z $binary ]]; then
    command -v cargo >/dev/null || { echo "install.sh: cargo is needed to build tally (https://rustup.rs)" >&2; exit 1; }
    cd "$(dirname "$0")"
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
    # Static where possible (scripts/release-build.sh says why, and what it falls back to).
    binary=$(scripts/release-build.sh | tail -n 1)
    # The collector is not on any hot path: a normal build. `tally demo` finds it next to tally.
    say "building tally-server (release)"
    cargo build --release --locked -p tally-server
    server_binary=$CARGO_TARGET_DIR/release/tally-server
fi
[[ -x $binary ]] || { echo "install.sh: $binary is not an executable tally binary" >&2; exit 1; }
hot_binary=$(dirname "$binary")/tally-shim

mkdir -p "$install_dir"
# Replaces $2 in the install directory with a copy of $1 atomically: running shims keep the old
# file until they exit.
put() {
    cp "$1" "$install_dir/$2.new.$$"
    chmod 755 "$install_dir/$2.new.$$"
    mv -f "$install_dir/$2.new.$$" "$install_dir/$2"
}
# tally-shim first: `tally setup` links the shims to the one beside tally (and says so when
# there is none: then they run tally itself).
if [[ -x $hot_binary ]]; then
    put "$hot_binary" tally-shim
else
    say "no tally-shim beside $binary: the shims will run tally itself"
fi
put "$binary" tally
if [[ -n ${server_binary:-} && -x $server_binary ]]; then
    put "$server_binary" tally-server
fi
say "installed $install_dir/tally and tally-shim; \`tally setup\` makes the shims:"
setup_args=()
((modify_path)) && setup_args+=(--modify-path)
"$install_dir/tally" setup "${setup_args[@]}"
say "then \`tally status\` shows whether the shims are first on PATH and which real tools they run"

if ((demo)); then
    if PATH="$bin_dir:$PATH" "$bin_dir/tally" demo --help >/dev/null 2>&1; then
        say "running \`tally demo\` (skip with --no-demo)"
        PATH="$bin_dir:$PATH" "$bin_dir/tally" demo || say "the demo failed; tally itself is installed"
    fi
fi
