#!/usr/bin/env python3
"""Each crate's layout, checked: its module graph has no circle, and no file
outside tests is much longer than a reader holds in mind.

A module of a crate is a top-level file or folder of its src/ (`gateway.rs`
and `gateway/`, `runtime/mod.rs`, ...): one node. An edge A -> B is any
`crate::B` path written in A's code (a `use`, or a path; not comments), tests
excluded (`tests.rs`, `tests/`, `#[cfg(test)] mod tests { ... }` blocks at
the end of a file). A circle is a strongly connected component of more than
one module. A file is too long past MAX_LINES lines (tests excluded).

Prints each crate's edges with --print; exits 1 naming every circle and
every file too long, so that `make lint` keeps both.

    scripts/layout.py [--print] [CRATE_SRC ...]   (default: filter/src filter/native/src control-plane/src)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 700
PATH = re.compile(r"\bcrate::(\w+)")
# `use crate::{a, b::c}`: the modules named in a braced group.
GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def module_of(src: Path, file: Path) -> str | None:
    rel = file.relative_to(src)
    top = rel.parts[0]
    if top in ("lib.rs", "main.rs"):
        return None
    return top.removesuffix(".rs")


def strip_tests(text: str) -> str:
    """Drops a trailing `#[cfg(test)] mod tests { ... }` block."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)
    return text[: m.start()] if m else text


def graph(src: Path) -> dict[str, set[str]]:
    modules = {p.name.removesuffix(".rs") for p in src.iterdir() if p.name not in ("lib.rs", "main.rs") and (p.suffix == ".rs" or p.is_dir())}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for file in src.rglob("*.rs"):
        if file.name == "tests.rs" or "tests" in file.relative_to(src).parts[:-1]:
            continue
        here = module_of(src, file)
        if here is None:
            continue
        # Comments mention modules without depending on them.
        text = re.sub(r"//.*", "", strip_tests(file.read_text()))
        named = set(PATH.findall(text))
        for group in GROUP.findall(text):
            named |= {part.strip().split("::")[0] for part in group.split(",") if part.strip()}
        edges[here] |= {n for n in named if n in modules and n != here}
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str]) -> int:
    show = "--print" in argv
    crates = [a for a in argv if not a.startswith("--")] or ["filter/src", "filter/native/src", "control-plane/src"]
    bad = 0
    for crate in crates:
        edges = graph(ROOT / crate)
        if show:
            for m in sorted(edges):
                print(f"{crate}: {m} -> {', '.join(sorted(edges[m])) or '-'}")
        for c in circles(edges):
            bad += 1
            print(f"layout: {crate}: these modules import each other in a circle: {', '.join(c)}")
        for file in sorted((ROOT / crate).rglob("*.rs")):
            if file.name == "tests.rs" or "tests" in file.relative_to(ROOT / crate).parts[:-1]:
                continue
            lines = len(strip_tests(file.read_text()).splitlines())
            if lines > MAX_LINES:
                bad += 1
                print(f"layout: {file.relative_to(ROOT)}: {lines} lines outside tests (at most {MAX_LINES}): split it by concern")
    if bad:
        return 1
    print(f"layout: no circle and no file over {MAX_LINES} lines in {', '.join(crates)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
