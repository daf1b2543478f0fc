#!/usr/bin/env python3
"""Lists import circles between the modules of a crate.

Usage: scripts/module_cycles.py CRATE_SRC_DIR...   (e.g. pipeline/src serve/src)

Every `.rs` file is one module (`a.rs` and `a/mod.rs` are `a`, `a/b.rs` is `a::b`).
A module depends on another when its code names it: `use crate::x::…`,
`crate::x::…` in an expression, `super::…`, `self::child::…`, or `child::…` for one
of its own child modules (`pub use child::Item` in a `mod.rs` is a dependency on
the child). A path is resolved to the longest module prefix it names, so
`crate::score::ScoreError` from `score::prepare` is a dependency on `score`.
Test code (each `#[cfg(test)]` item, and `tests.rs` modules) is left out: tests
may look at their parent.

A circle is a strongly connected component of two or more modules. The script
prints each with one path that closes it, and exits 1 when there is any.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_RE = re.compile(rf"\b(crate|super|self|{IDENT})((?:::{IDENT})+)")


def module_name(src: Path, file: Path) -> tuple:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text: str) -> str:
    """Drops comments, and the contents of string and char literals, in one scan
    (a `//` or `/*` inside a string is not a comment)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not re.match(r"\w", text[i - 1 : i] or " "):
            hashes = len(re.match(r"r(#*)", text[i:]).group(1))
            end = '"' + "#" * hashes
            j = text.find(end, i + 2 + hashes)
            out.append('""')
            i = n if j < 0 else j + len(end)
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.[^']*|[^'\\])'", text[i:i + 12]):
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:i + 12])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_items(text: str) -> str:
    """Removes each `#[cfg(test)]` item: up to its `;`, or its `{ … }` block."""
    while True:
        at = text.find("#[cfg(test)]")
        if at < 0:
            return text
        i = at + len("#[cfg(test)]")
        while i < len(text) and text[i] not in "{;":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            while i < len(text):
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
        text = text[:at] + text[i + 1 :]


def expand_use(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    depth, brace = 0, -1
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                brace = i
            depth += 1
        elif ch == "}":
            depth -= 1
    if brace < 0:
        return [tree]
    prefix = tree[:brace]
    inner = tree[brace + 1 : tree.rfind("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    out = []
    for item in items:
        if item.strip():
            for sub in expand_use(item):
                out.append(prefix + sub.strip())
    return out


def references(text: str) -> list:
    refs = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        for path in expand_use(m.group(1)):
            path = re.sub(r"\s+as\s+\w+$", "", path.strip())
            refs.append(path.split("::"))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    for m in PATH_RE.finditer(body):
        refs.append([m.group(1)] + m.group(2).split("::")[1:])
    return refs


def resolve(mod: tuple, path: list, modules: set):
    """The module a path names, or None for an external crate or a local item."""
    if not path:
        return None
    head, rest = path[0], path[1:]
    if head == "crate":
        base = ()
    elif head == "super":
        base = mod[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif head == "self":
        base = mod
    elif mod + (head,) in modules:
        base, rest = mod + (head,), rest
    else:
        return None
    target = base
    for seg in rest:
        if target + (seg,) in modules:
            target = target + (seg,)
        else:
            break
    return target


def graph_of(src: Path) -> dict:
    files = {module_name(src, f): f for f in src.rglob("*.rs")}
    modules = {m for m in files if not (m and m[-1] == "tests")}
    edges = {m: {} for m in modules}
    for mod in modules:
        text = drop_test_items(strip_comments(files[mod].read_text()))
        for path in references(text):
            target = resolve(mod, path, modules)
            if target is not None and target != mod and target in modules:
                edges[mod].setdefault(target, "::".join(path))
    return edges


def circles(edges: dict) -> list:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def name(mod: tuple) -> str:
    return "::".join(("crate",) + mod)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    found = 0
    for arg in sys.argv[1:]:
        src = Path(arg)
        edges = graph_of(src)
        n_edges = sum(len(v) for v in edges.values())
        comps = circles(edges)
        print(f"{src}: {len(edges)} modules, {n_edges} dependencies, {len(comps)} circles")
        for comp in comps:
            found += 1
            print(f"  circle: {', '.join(name(m) for m in comp)}")
            members = set(comp)
            for a in comp:
                for b, via in sorted(edges[a].items()):
                    if b in members:
                        print(f"    {name(a)} -> {name(b)}   (via {via})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
