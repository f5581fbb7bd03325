#!/usr/bin/env python3
"""Two structural checks over the Rust sources of the workspace, read as tokens.

    scripts/rust-structure.py imports [--test-code] [--except PACKAGE]... [PACKAGE...]
        Pairs of files of one crate that import each other: file A names something that lives
        in file B (`use crate::b::X`, `crate::b::f()`, `super::X`, a child module's items…) and
        B names something in A. Exits 1 if there is any pair, 0 if none. A module and its parent
        (lib.rs and a module it declares, `store.rs` and `store/local.rs`) are not counted: the
        parent is where the child is declared, and a child using its parent's items is how Rust
        modules nest (`--parents` lists them). References from test code (`#[cfg(test)]`
        modules) are left out unless `--test-code` is given; `--except` leaves a package out.
    scripts/rust-structure.py functions [--over N] [PACKAGE...]
        Every function longer than N lines (100 by default), from its `fn` line to its closing
        brace, outside tests (`tests/` directories, `#[cfg(test)]` modules, `#[test]`
        functions), longest first. Always exits 0: it is a list to read.

Crates and their files come from `cargo metadata` (every target of every workspace package,
its modules followed through `mod` declarations and `#[path]`). No package named: all.

How a name is resolved: a path is taken from `crate::`, `super::`, `self::`, or a child
module's name, to the longest prefix that is a module; if the next segment is a name that
module imports (`pub use state::AppState` in lib.rs), the import is followed to where the
name is defined. A path that names a module itself (`use crate::store;`) counts as using that
module's file. Method calls on a type whose `impl` blocks are spread over several files are not
seen (no type checking here): those files do not import each other by name.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from collections import defaultdict

# ---------------------------------------------------------------------------------------------
# Tokens


IDENT = re.compile(r"r#[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*")
CHAR = re.compile(r"'(?:\\u\{[0-9a-fA-F]{1,6}\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'")
RAW_STRING = re.compile(r'(?:b|c)?r(#*)"')
NUMBER = re.compile(r"[0-9][0-9A-Za-z_]*(?:\.[0-9][0-9A-Za-z_]*)?")


class Token:
    __slots__ = ("text", "line")

    def __init__(self, text, line):
        self.text = text
        self.line = line

    def __repr__(self):
        return f"{self.text}@{self.line}"


def tokenize(source):
    """Identifiers, `::`, string literals (their text in double quotes: `#[path]` needs it), and
    single punctuation characters, with their line; comments, characters, lifetimes and numbers
    are dropped."""
    tokens = []
    i, line, n = 0, 1, len(source)
    while i < n:
        c = source[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif source.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if source.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif source.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    line += source[i] == "\n"
                    i += 1
        elif (m := RAW_STRING.match(source, i)) and (c in "bcr"):
            close = '"' + m.group(1)
            end = source.find(close, m.end())
            end = n if end < 0 else end + len(close)
            tokens.append(Token('"' + source[m.end() : end - len(close)] + '"', line))
            line += source.count("\n", i, end)
            i = end
        elif c == '"' or (c in "bc" and source.startswith('"', i + 1)):
            start = j = i + (1 if c == '"' else 2)
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            tokens.append(Token('"' + source[start:j] + '"', line))
            line += source.count("\n", i, j)
            i = j + 1
        elif c == "'" or (c == "b" and source.startswith("'", i + 1)):
            m = CHAR.match(source, i + (c == "b"))
            if m:
                i = m.end()
            else:  # a lifetime or a label
                m = IDENT.match(source, i + 1)
                i = m.end() if m else i + 1
        elif m := IDENT.match(source, i):
            tokens.append(Token(m.group(0).removeprefix("r#"), line))
            i = m.end()
        elif m := NUMBER.match(source, i):
            i = m.end()
        elif source.startswith("::", i):
            tokens.append(Token("::", line))
            i += 2
        else:
            tokens.append(Token(c, line))
            i += 1
    return tokens


def matching(tokens, i):
    """Index of the bracket closing the one at `i`."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    opening, closing, depth = tokens[i].text, pairs[tokens[i].text], 0
    for j in range(i, len(tokens)):
        if tokens[j].text == opening:
            depth += 1
        elif tokens[j].text == closing:
            depth -= 1
            if depth == 0:
                return j
    return len(tokens) - 1


def attribute_text(tokens, i):
    """At `#` `[`: the attribute's tokens joined, and the index after it."""
    end = matching(tokens, i + 1)
    return "".join(t.text for t in tokens[i + 2 : end]), end + 1


# ---------------------------------------------------------------------------------------------
# Files, modules and crates


class Module:
    """A module: a file's top, or an inline `mod name { … }` in it."""

    def __init__(self, path, file, test):
        self.path = path  # tuple of names from the crate root
        self.file = file
        self.test = test  # under `#[cfg(test)]`
        self.children = {}  # name -> module path
        self.imports = {}  # name -> absolute path it imports (from `use`)


class Crate:
    def __init__(self, name, root):
        self.name = name
        self.root = root
        self.modules = {}  # module path -> Module
        self.file_tokens = {}  # file -> tokens
        self.refs = []  # (file, test, module path, raw path segments, line)


def workspace_targets(packages, excepted=()):
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    root = meta["workspace_root"]
    for package in meta["packages"]:
        if (packages and package["name"] not in packages) or package["name"] in excepted:
            continue
        for target in package["targets"]:
            yield package["name"], target["name"], target["kind"], target["src_path"], root


def module_dir(file, is_root):
    """Where a file's `mod x;` declarations are looked up."""
    base, name = os.path.split(file)
    if is_root or name == "mod.rs":
        return base
    return os.path.join(base, name[:-3])


def load_crate(name, root_file):
    crate = Crate(name, root_file)
    pending = [((), root_file, True, False)]
    while pending:
        path, file, is_root, test = pending.pop()
        if file in crate.file_tokens or not os.path.isfile(file):
            continue
        with open(file, encoding="utf-8") as f:
            tokens = tokenize(f.read())
        crate.file_tokens[file] = tokens
        scan(crate, tokens, 0, len(tokens), path, file, module_dir(file, is_root), test, pending)
    return crate


def scan(crate, tokens, start, end, path, file, directory, test, pending, inline=False):
    """Records the module at `path` (from tokens[start:end]; `inline` for a `mod x { … }`): its
    child modules, its `use` imports, and every path it names."""
    module = crate.modules.setdefault(path, Module(path, file, test))
    attrs = []
    i = start
    while i < end:
        text = tokens[i].text
        if text == "#" and i + 1 < end and tokens[i + 1].text == "[":
            attr, i = attribute_text(tokens, i)
            attrs.append(attr)
            continue
        if text == "#" and i + 2 < end and tokens[i + 1].text == "!":
            _, i = attribute_text(tokens, i + 1)
            continue
        if text == "mod" and i + 2 < end and IDENT.fullmatch(tokens[i + 1].text):
            child = tokens[i + 1].text
            child_path = path + (child,)
            child_test = test or "cfg(test)" in attrs
            module.children[child] = child_path
            explicit = next((a for a in attrs if a.startswith("path=")), None)
            if tokens[i + 2].text == ";":
                if explicit is not None:
                    # Outside an inline module, relative to the declaring file's directory.
                    base = directory if inline else os.path.dirname(file)
                    target = os.path.normpath(os.path.join(base, explicit_path(explicit)))
                    pending.append((child_path, target, True, child_test))
                else:
                    candidates = [
                        os.path.join(directory, child + ".rs"),
                        os.path.join(directory, child, "mod.rs"),
                    ]
                    target = next((c for c in candidates if os.path.isfile(c)), candidates[0])
                    pending.append((child_path, target, False, child_test))
                i += 3
            elif tokens[i + 2].text == "{":
                close = matching(tokens, i + 2)
                inner = os.path.join(directory, child)
                scan(crate, tokens, i + 3, close, child_path, file, inner, child_test, pending, True)
                i = close + 1
            else:
                i += 1
            attrs = []
            continue
        if text == "use" and (i == 0 or tokens[i - 1].text != "::"):
            semi = i
            while semi < end and tokens[semi].text != ";":
                semi += 1
            for segments, alias in use_tree(tokens[i + 1 : semi]):
                if segments:
                    if alias not in (None, "_", "*"):
                        module.imports[alias] = segments
                    crate.refs.append((file, test, path, segments, tokens[i].line))
            i = semi + 1
            attrs = []
            continue
        if text in ("crate", "super", "self") or (IDENT.fullmatch(text) and text in module.children):
            if i + 1 < end and tokens[i + 1].text == "::" and (i == 0 or tokens[i - 1].text != "::"):
                segments, j = [text], i + 1
                while j + 1 < end and tokens[j].text == "::" and IDENT.fullmatch(tokens[j + 1].text):
                    segments.append(tokens[j + 1].text)
                    j += 2
                crate.refs.append((file, test, path, segments, tokens[i].line))
                i = j
                continue
        if text in (";", "}", "{"):
            attrs = []
        i += 1


def explicit_path(attr):
    """`path="x/y.rs"` → `x/y.rs`."""
    return attr.removeprefix("path=").strip('"')


def use_tree(tokens):
    """`use` tokens (after `use`, before `;`) → [(segments, alias)]: `a::{b, c::d as e, *}`
    gives (a,b)/b, (a,c,d)/e, (a,*)/*."""
    out = []

    def walk(i, prefix):
        segments = list(prefix)
        while i < len(tokens):
            text = tokens[i].text
            if text == "{":
                close = matching(tokens, i)
                j = i + 1
                while j < close:
                    k, depth = j, 0
                    while k < close and not (tokens[k].text == "," and depth == 0):
                        depth += tokens[k].text == "{"
                        depth -= tokens[k].text == "}"
                        k += 1
                    sub = tokens[j:k]
                    out.extend(use_tree_group(sub, segments))
                    j = k + 1
                return close + 1
            if text == "::":
                i += 1
                continue
            if text == "*":
                out.append((segments, "*"))
                return i + 1
            if text == "as":
                alias = tokens[i + 1].text
                out.append((segments, alias))
                return i + 2
            segments.append(text)
            i += 1
        if segments:
            out.append((segments, segments[-1]))
        return i

    walk(0, [])
    return out


def use_tree_group(tokens, prefix):
    """One item of a `{…}` group, under `prefix`; `self` names the prefix itself."""
    result = []
    for segments, alias in use_tree(tokens):
        if segments and segments[-1] == "self":
            full = list(prefix) + segments[:-1]
            alias = full[-1] if alias == "self" else alias
        else:
            full = list(prefix) + segments
        result.append((full, alias))
    return result


def absolute(crate, module_path, segments):
    """A path as written in the module at `module_path` → a path from the crate root, or None
    when it leaves the crate."""
    first, rest = segments[0], segments[1:]
    if first == "crate":
        return list(rest)
    if first == "self":
        return list(module_path) + list(rest)
    if first == "super":
        base = list(module_path)
        while segments and segments[0] == "super":
            base = base[:-1]
            segments = segments[1:]
        return base + list(segments)
    module = crate.modules.get(tuple(module_path))
    if module and first in module.children:
        return list(module.children[first]) + list(rest)
    if module and first in module.imports:
        imported = absolute(crate, module_path, module.imports[first])
        return None if imported is None else imported + list(rest)
    return None


def resolve(crate, path, depth=0):
    """An absolute path → the file where what it names lives."""
    if path is None:
        return None
    k = len(path)
    while k >= 0 and tuple(path[:k]) not in crate.modules:
        k -= 1
    if k < 0:
        return None
    module = crate.modules[tuple(path[:k])]
    if k < len(path) and depth < 16 and path[k] in module.imports:
        followed = absolute(crate, module.path, module.imports[path[k]])
        if followed is not None:
            found = resolve(crate, followed + list(path[k + 1 :]), depth + 1)
            if found is not None:
                return found
    return module.file


def file_modules(crate):
    """file -> the module path of its top."""
    tops = {}
    for path, module in crate.modules.items():
        if module.file not in tops or len(path) < len(tops[module.file]):
            tops[module.file] = path
    return tops


def mutual_imports(crate, with_tests):
    """[(a, b, what a names in b, what b names in a, whether one declares the other)]."""
    edges = defaultdict(set)  # (from, to) -> {names}
    for file, test, module_path, segments, line in crate.refs:
        if test and not with_tests:
            continue
        target = resolve(crate, absolute(crate, module_path, segments))
        if target is None or target == file:
            continue
        edges[(file, target)].add(f"{'::'.join(segments)} (line {line})")
    tops = file_modules(crate)
    pairs = []
    for (a, b), names in edges.items():
        if a < b and (b, a) in edges:
            parent = tops[a] == tops[b][:-1] or tops[b] == tops[a][:-1]
            pairs.append((a, b, sorted(names), sorted(edges[(b, a)]), parent))
    return sorted(pairs)


# ---------------------------------------------------------------------------------------------
# Functions


def long_functions(tokens, over, file):
    found = []

    def walk(start, end, in_test):
        attrs = []
        i = start
        while i < end:
            text = tokens[i].text
            if text == "#" and i + 1 < end and tokens[i + 1].text == "[":
                attr, i = attribute_text(tokens, i)
                attrs.append(attr)
                continue
            if text == "mod" and i + 2 < end and tokens[i + 2].text == "{":
                close = matching(tokens, i + 2)
                walk(i + 3, close, in_test or "cfg(test)" in attrs)
                i, attrs = close + 1, []
                continue
            if text == "fn" and i + 1 < end and IDENT.fullmatch(tokens[i + 1].text):
                name = tokens[i + 1].text
                j = i + 2
                while j < end and tokens[j].text not in ("{", ";"):
                    j = matching(tokens, j) + 1 if tokens[j].text in "([" else j + 1
                if j < end and tokens[j].text == "{":
                    close = matching(tokens, j)
                    is_test = in_test or any(
                        a == "test" or a.endswith("::test") or a.startswith("test(")
                        or a.startswith("tokio::test") for a in attrs
                    )
                    lines = tokens[close].line - tokens[i].line + 1
                    if not is_test and lines > over:
                        found.append((lines, file, tokens[i].line, name))
                    walk(j + 1, close, is_test)
                    i, attrs = close + 1, []
                    continue
            if text in (";", "}", "{"):
                attrs = []
            i += 1

    walk(0, len(tokens), False)
    return found


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imports = sub.add_parser("imports", help="pairs of files of a crate that import each other")
    imports.add_argument("--test-code", action="store_true", help="count test code's imports too")
    imports.add_argument(
        "--parents", action="store_true", help="list a module and its parent too (not counted)"
    )
    imports.add_argument(
        "--except", dest="excepted", action="append", default=[], metavar="PACKAGE",
        help="leave this package out (again for each)",
    )
    imports.add_argument("packages", nargs="*")
    functions = sub.add_parser("functions", help="functions over N lines outside tests")
    functions.add_argument("--over", type=int, default=100)
    functions.add_argument("packages", nargs="*")
    args = parser.parse_args()

    targets = list(workspace_targets(set(args.packages), set(getattr(args, "excepted", []))))
    if not targets:
        sys.exit(f"no workspace package named {' '.join(args.packages)}")
    root = targets[0][4]
    rel = lambda f: os.path.relpath(f, root)  # noqa: E731

    if args.command == "imports":
        found = parents = crates = 0
        for package, target, kinds, src, _ in targets:
            crate = load_crate(f"{package} ({'/'.join(kinds)} {target})", src)
            if len(crate.file_tokens) < 2:
                continue
            crates += 1
            for a, b, a_to_b, b_to_a, parent in mutual_imports(crate, args.test_code):
                if parent and not args.parents:
                    parents += 1
                    continue
                found += 0 if parent else 1
                print(f"{crate.name}: {rel(a)} <-> {rel(b)}{' (parent and child)' if parent else ''}")
                print(f"    {rel(a)} names {'; '.join(a_to_b)}")
                print(f"    {rel(b)} names {'; '.join(b_to_a)}")
        print(
            f"{found} pair(s) of files that import each other, in {crates} crate target(s) of "
            f"more than one file; {parents} pair(s) of a module and its parent not counted "
            "(the parent declares the child; --parents lists them)"
        )
        sys.exit(1 if found else 0)

    seen, rows = set(), []
    for package, target, kinds, src, _ in targets:
        crate = load_crate(package, src)
        test_files = {m.file for m in crate.modules.values() if m.test and m.path == file_modules(crate)[m.file]}
        for file, tokens in crate.file_tokens.items():
            in_tests_dir = f"{os.sep}tests{os.sep}" in rel(file) or rel(file).startswith("tests" + os.sep)
            if file in seen or in_tests_dir or file in test_files:
                continue
            seen.add(file)
            rows.extend(long_functions(tokens, args.over, file))
    for lines, file, line, name in sorted(rows, key=lambda r: (-r[0], r[1], r[2])):
        print(f"{lines:5}  {rel(file)}:{line}  {name}")
    print(f"{len(rows)} function(s) over {args.over} lines outside tests")


if __name__ == "__main__":
    main()
