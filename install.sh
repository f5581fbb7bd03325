#!/usr/bin/env bash
# Installs tally for the current user, without root.
#
#   ./install.sh [--modify-path] [--no-demo] [--binary PATH] [--server-binary PATH]
#   ./install.sh --uninstall [--purge]
#
# What it installs (and all that --uninstall removes):
#   $TALLY_INSTALL_DIR (default ~/.local/share/tally)/tally      the binary
#   $TALLY_INSTALL_DIR/tally-server                              the collector (demo, self-hosting)
#   $TALLY_INSTALL_DIR/bin/{tally,cargo,rustc,rustfmt,cargo-fmt,go,gofmt}
#                                                                links to it: the shims
#   with --modify-path, one marked block in ~/.profile, ~/.bashrc and ~/.zshrc (those present,
#   ~/.profile always) that puts the shims directory first on PATH.
# --purge also deletes tally's data directory ($TALLY_DIR, else $XDG_STATE_HOME/tally, else
# ~/.local/state/tally). Running it again is harmless: every step replaces what it made.
#
# The binary is built by scripts/release-build.sh: `cargo build --release`, static and not
# position-independent (with Rust's musl target where it is installed, else static glibc, else a
# normal build; the script says why). The shim runs on every compile, and such a binary skips
# the dynamic loader and its relocations (bench/README.md, "Techniques"). The price is that
# tally's own code and data sit at a fixed address (stack, heap and mappings are still
# randomised). --binary PATH installs an already built
# tally instead (packagers, tests), --server-binary PATH likewise for tally-server.
set -euo pipefail

tools=(cargo rustc rustfmt cargo-fmt go gofmt)
install_dir=${TALLY_INSTALL_DIR:-$HOME/.local/share/tally}
bin_dir=$install_dir/bin
marker_begin="# >>> tally shims (added by tally's install.sh; remove with ./install.sh --uninstall) >>>"
marker_end="# <<< tally shims <<<"

modify_path=0 uninstall=0 purge=0 demo=1 binary="" server_binary=""
usage() { sed -n '2,23s/^# \{0,1\}//p' "$0"; }
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

profiles() {
    local f
    echo "$HOME/.profile"
    for f in "$HOME/.bashrc" "$HOME/.zshrc"; do [[ -f $f ]] && echo "$f"; done
    return 0
}

# Removes our marked block from a profile file, leaving everything else byte for byte.
remove_block() {
    local file=$1
    [[ -f $file ]] || return 0
    grep -qF "$marker_begin" "$file" || return 0
    local tmp
    tmp=$(mktemp "$file.tally.XXXXXX")
    awk -v b="$marker_begin" -v e="$marker_end" '
        $0 == b { skip = 1; next }
        skip && $0 == e { skip = 0; next }
        !skip { print }
    ' "$file" >"$tmp"
    cat "$tmp" >"$file"
    rm -f "$tmp"
    say "removed the PATH block from $file"
}

data_dir() {
    if [[ ${TALLY_DIR:-} == /* ]]; then echo "$TALLY_DIR"
    elif [[ -n ${TALLY_DIR:-} ]]; then echo ""
    elif [[ ${XDG_STATE_HOME:-} == /* ]]; then echo "$XDG_STATE_HOME/tally"
    else echo "$HOME/.local/state/tally"; fi
}

if ((uninstall)); then
    for tool in tally "${tools[@]}"; do
        link=$bin_dir/$tool
        # Only links that point at our binary are ours.
        if [[ -L $link && $(readlink "$link") == "$install_dir/tally" ]]; then rm -f "$link"; fi
    done
    rmdir "$bin_dir" 2>/dev/null || true
    rm -f "$install_dir/tally" "$install_dir/tally-server"
    rmdir "$install_dir" 2>/dev/null || true
    while read -r f; do remove_block "$f"; done < <(profiles)
    say "uninstalled tally from $install_dir"
    if ((purge)); then
        data=$(data_dir)
        if [[ -z $data ]]; then
            say "TALLY_DIR is not an absolute path; no data directory to delete"
        elif [[ -d $data ]]; then
            # Refuse to delete a directory that does not look like tally's.
            if [[ -z $(ls -A "$data") || -e $data/counters || -e $data/mode || -e $data/weekday || -e $data/reports ]]; then
                rm -rf -- "$data"
                say "deleted tally's data in $data"
            else
                say "not deleting $data: it does not look like tally's data directory" >&2
                exit 1
            fi
        fi
    fi
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

mkdir -p "$bin_dir"
# Replace the binary atomically: running shims keep the old file until they exit.
cp "$binary" "$install_dir/tally.new.$$"
chmod 755 "$install_dir/tally.new.$$"
mv -f "$install_dir/tally.new.$$" "$install_dir/tally"
if [[ -n ${server_binary:-} && -x $server_binary ]]; then
    cp "$server_binary" "$install_dir/tally-server.new.$$"
    chmod 755 "$install_dir/tally-server.new.$$"
    mv -f "$install_dir/tally-server.new.$$" "$install_dir/tally-server"
fi
for tool in tally "${tools[@]}"; do
    ln -sfn "$install_dir/tally" "$bin_dir/$tool"
done
say "installed $install_dir/tally and the shims in $bin_dir"

path_line="export PATH=\"$bin_dir:\$PATH\""
if ((modify_path)); then
    while read -r f; do
        remove_block "$f" >/dev/null
        printf '%s\n%s\n%s\n' "$marker_begin" "$path_line" "$marker_end" >>"$f"
        say "put the shims first on PATH in $f"
    done < <(profiles)
    say "open a new shell (or run the line below) for it to take effect"
else
    say "to use the shims, put this line in your shell profile (or rerun with --modify-path):"
fi
echo
echo "    $path_line"
echo
say "then \`tally status\` shows whether the shims are first on PATH and which real tools they run"

if ((demo)); then
    if PATH="$bin_dir:$PATH" "$bin_dir/tally" demo --help >/dev/null 2>&1; then
        say "running \`tally demo\` (skip with --no-demo)"
        PATH="$bin_dir:$PATH" "$bin_dir/tally" demo || say "the demo failed; tally itself is installed"
    fi
fi
