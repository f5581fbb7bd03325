#!/usr/bin/env python3
"""Checks that every repository path ARCHITECTURE.md names exists.

    scripts/architecture-paths.py [ARCHITECTURE.md]

Exits 1 and lists each name that leads nowhere, 0 when all do. `.ci/run` calls it, so a change
that moves a file without updating the map fails CI.

What counts as a name, in backticks anywhere but the "Data directory" section (whose paths are
under the user's data directory, not in the repository):
- a path with a `/` or a file name with an extension (`crates/tally-sys/src/mapped.rs`,
  `setup/shell_files.rs`, `state.rs`, `bench/`);
- a Rust path into one of the workspace's crates (`tally_sys::parse`, `tally_home::fsio`).

How a name is resolved: from the repository root first. A name that is not there is looked for
under the crates the surrounding text is about: the `crates/…`, `shims/` or `wrapper/` paths
(or the crates Rust paths name) earlier in the same table row, list item or paragraph; with
none, anywhere in the repository. A Rust path `krate::a::b` must name a module file (`a.rs`, `a/mod.rs`, …) or an
item that the crate's sources define (`fn b`, `struct b`, `mod a`, …).

Skipped: names with placeholders or globs (`<week>`, `{t}`, `*`), URLs and routes (`/config`,
`GET /status`), environment values (`$TALLY_DIR`), and command lines (anything with a space).
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTENSIONS = (".rs", ".md", ".sh", ".toml", ".json", ".py", ".c", ".txt", ".lock")
SKIPPED_SECTIONS = ("Data directory",)


def tracked_files():
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line]


def crate_dirs(files):
    """Crate name (with `_`) → its directory, for every Cargo.toml with a [package]."""
    dirs = {}
    for path in files:
        if not path.endswith("Cargo.toml"):
            continue
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            text = f.read()
        match = re.search(r'^\[package\][^\[]*?^name\s*=\s*"([^"]+)"', text, re.M | re.S)
        if match:
            dirs[match.group(1).replace("-", "_")] = os.path.dirname(path)
    return dirs


def units(markdown):
    """(section, text) for each table row, list item or paragraph, outside skipped sections
    and code blocks."""
    section = ""
    in_code = False
    current = []
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if line.startswith("#"):
            if current:
                yield section, " ".join(current)
                current = []
            section = line.lstrip("#").strip()
            continue
        if any(section.startswith(s) for s in SKIPPED_SECTIONS):
            continue
        starts_unit = line.startswith("|") or re.match(r"\s*([-*]|\d+\.)\s", line)
        if (starts_unit or not line.strip()) and current:
            yield section, " ".join(current)
            current = []
        if line.strip():
            current.append(line)
    if current:
        yield section, " ".join(current)


def is_candidate(name):
    if any(c in name for c in "<>{}*$~ ,()[]|@") or name.startswith(("/", "http", "-", ".")):
        return False
    if "::" in name:
        return bool(re.fullmatch(r"tally[a-z_]*(::[A-Za-z_][A-Za-z0-9_]*)+", name))
    return "/" in name or name.endswith(EXTENSIONS)


def context_dirs(text_before, dirs):
    """The crate directories the text before a name is about (its crate paths and Rust paths),
    the nearest first."""
    found = []
    for match in re.finditer(r"`([^`]+)`", text_before):
        token = match.group(1)
        for crate, path in dirs.items():
            if path and (
                token == path or token.startswith(path + "/") or token.startswith(crate + "::")
            ):
                if path in found:
                    found.remove(path)
                found.insert(0, path)
    return found


def exists_under(name, base, files):
    name = name.rstrip("/")
    prefix = (base + "/") if base else ""
    for path in files:
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):]
        if rest == name or rest.endswith("/" + name) or rest.startswith(name + "/"):
            return True
        if ("/" + rest).find("/" + name + "/") >= 0:
            return True
    return False


def rust_path_exists(name, dirs, files):
    parts = name.split("::")
    base = dirs.get(parts[0])
    if base is None:
        return False
    sources = [p for p in files if p.startswith(base + "/") and p.endswith(".rs")]
    modules = parts[1:]
    # A module file for the longest prefix, then the rest as items of the crate's sources.
    for i in range(len(modules), 0, -1):
        rel = "/".join(modules[:i])
        if any(p.endswith("/" + rel + ".rs") or p.endswith("/" + rel + "/mod.rs") for p in sources):
            if i == len(modules):
                return True
            modules = modules[i:]
            break
    item = modules[-1]
    pattern = re.compile(
        r"\b(fn|struct|enum|trait|type|const|static|mod|macro_rules!)\s+" + re.escape(item) + r"\b"
        r"|\bpub use [^;]*\b" + re.escape(item) + r"\b"
    )
    for path in sources:
        with open(os.path.join(ROOT, path), encoding="utf-8", errors="replace") as f:
            if pattern.search(f.read()):
                return True
    return False


def main():
    doc = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "ARCHITECTURE.md")
    with open(doc, encoding="utf-8") as f:
        markdown = f.read()
    files = tracked_files()
    dirs = crate_dirs(files)
    missing = []
    checked = 0
    for section, text in units(markdown):
        for match in re.finditer(r"`([^`]+)`", text):
            name = match.group(1).strip()
            if not is_candidate(name):
                continue
            checked += 1
            if "::" in name:
                ok = rust_path_exists(name, dirs, files)
            elif os.path.exists(os.path.join(ROOT, name)):
                ok = True
            else:
                bases = context_dirs(text[: match.start()], dirs)
                if bases:
                    ok = any(exists_under(name, base, files) for base in bases)
                else:
                    # No crate named before it: a file or folder of that name anywhere will do.
                    ok = exists_under(name, "", files)
            if not ok:
                missing.append((section, name))
    for section, name in missing:
        print(f"ARCHITECTURE.md ({section}): `{name}` leads nowhere in the repository")
    print(f"{checked} names checked, {len(missing)} leading nowhere")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
