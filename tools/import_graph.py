"""Print bayesgmm's import graph (module-level and function-level imports) and its cycles.

    python tools/import_graph.py [path-to-a-checkout]

Uses grimp (installed with the test extras, as import-linter's engine).  The layers the
package must respect are checked by the import-linter contract in pyproject.toml
(`lint-imports`, run by tests/test_architecture.py).
"""

import sys

import grimp


def main(root: str | None = None) -> int:
    if root:
        sys.path.insert(0, root)
    graph = grimp.build_graph("bayesgmm")
    modules = sorted(m for m in graph.modules if m.count(".") == 1)
    short = lambda m: m.removeprefix("bayesgmm.")  # noqa: E731
    for module in modules:
        deps = sorted(short(d) for d in graph.find_modules_directly_imported_by(module)
                      if d.count(".") == 1)
        print(f"{short(module):14} -> {', '.join(deps)}")
    cycles = sorted({tuple(sorted((a, b))) for a in modules for b in modules if a < b
                     and graph.chain_exists(a, b) and graph.chain_exists(b, a)})
    print(f"\n{len(cycles)} pair(s) of modules that import each other (directly or not)"
          + (":" if cycles else ""))
    for a, b in cycles:
        print(f"  {short(a)} <-> {short(b)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
