"""Structure report: import graph between subpackages and files, cycles, module and function sizes.

    python benchmarks/structure.py            # the table
    python benchmarks/structure.py --json     # the same as JSON

Every ``import``/``from ... import`` of an ``edgemask`` module counts, at the
top of a file or inside a function (a lazy import is still a dependency);
the string tables of lazy re-exports in ``__init__`` files do not. Relative
imports are resolved. A cycle is a strongly connected component of more than
one node in the graph.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "edgemask"
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, modules: set) -> set:
    """edgemask modules ``path`` imports (resolved to a known module or package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = module_name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for n in names:
            while n and n not in modules:
                n = n.rsplit(".", 1)[0] if "." in n else ""
            if n and n != me and n.startswith("edgemask"):
                out.add(n)
    return out


def sccs(graph: dict) -> list:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return sorted(out)


def subpackage(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "edgemask"


def long_functions(path: Path) -> list:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                out.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", n))
    return out


def analyse() -> dict:
    files = sorted(PKG.rglob("*.py"))
    modules = {module_name(f) for f in files}
    graph = {module_name(f): imports_of(f, modules) for f in files}
    # Packages' __init__ re-export their children; a child importing a sibling through the
    # package is not a cycle of design, so file cycles ignore edges into a package __init__.
    file_graph = {
        m: {d for d in deps if not (PKG / Path(*d.split(".")[1:]) / "__init__.py").is_file()}
        for m, deps in graph.items()
    }
    sub = defaultdict(set)
    for m, deps in graph.items():
        for d in deps:
            a, b = subpackage(m), subpackage(d)
            if a != b and a != "edgemask" and b != "edgemask":
                sub[a].add(b)
    sizes = sorted(
        ((str(f.relative_to(ROOT)), len(f.read_text(encoding="utf-8").splitlines())) for f in files),
        key=lambda t: -t[1],
    )
    return {
        "subpackage_edges": {k: sorted(v) for k, v in sorted(sub.items())},
        "subpackage_cycles": sccs({k: set(v) for k, v in sub.items()}),
        "file_cycles": sccs(file_graph),
        "rules": {
            "backends imports export": sorted(
                d for m, ds in graph.items() if subpackage(m) == "backends" for d in ds if subpackage(d) == "export"
            ),
            "data imports vision": sorted(
                d for m, ds in graph.items() if subpackage(m) == "data" for d in ds if subpackage(d) == "vision"
            ),
            "outside cli imports cli": sorted(
                f"{m} -> {d}" for m, ds in graph.items() if subpackage(m) != "cli" for d in ds if subpackage(d) == "cli"
            ),
        },
        "modules_over_limit": [s for s in sizes if s[1] > MAX_MODULE_LINES],
        "functions_over_limit": sorted((x for f in files for x in long_functions(f)), key=lambda t: -t[1]),
        "largest_modules": sizes[:10],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    r = analyse()
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print("subpackage imports (a -> b):")
    for a, bs in r["subpackage_edges"].items():
        print(f"  {a:12s} -> {', '.join(bs)}")
    print(f"subpackage cycles: {len(r['subpackage_cycles'])}")
    for c in r["subpackage_cycles"]:
        print("  " + " <-> ".join(c))
    print(f"file cycles: {len(r['file_cycles'])}")
    for c in r["file_cycles"]:
        print("  " + " <-> ".join(c))
    for rule, hits in r["rules"].items():
        print(f"{rule}: {len(hits)}" + (f"  ({', '.join(hits[:6])}{' ...' if len(hits) > 6 else ''})" if hits else ""))
    print(f"\n| modules over {MAX_MODULE_LINES} lines | lines |\n|---|---|")
    for name, n in r["modules_over_limit"]:
        print(f"| {name} | {n} |")
    print(f"\n| functions over {MAX_FUNCTION_LINES} lines | lines |\n|---|---|")
    for name, n in r["functions_over_limit"]:
        print(f"| {name} | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
