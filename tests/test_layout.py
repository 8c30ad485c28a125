"""The package's layers hold: no module imports a higher layer, the root is lazy, the CLI sits on the public API.

Imports are read from the source with :mod:`ast` (module-level and function-level alike; ``TYPE_CHECKING`` blocks
excepted, since they never run). ``docs/architecture.md`` draws the same ladder.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rubrickit"

LADDER = [
    ["errors", "_util"],
    ["rubric"],
    ["data", "backends"],
    ["judge"],
    ["refine"],
    ["generate"],
    ["rewards"],
    ["integrations"],
    ["eval"],
    ["cli"],
]
"""Bottom to top; a module may import its own layer's packages and any layer below."""

LEVEL = {name: level for level, names in enumerate(LADDER) for name in names}

KNOWN_UPWARD: set[tuple[str, str]] = set()
"""Imports that still run upward, each with the reason it is not yet moved (empty: none)."""


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports() -> list[tuple[str, str, int]]:
    """(importing module, imported rubrickit module, line) for every import of the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        skip = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{alias.name}" for alias in node.names]
                targets = [name for name in names if (PACKAGE.parent / name.replace(".", "/")).exists()
                           or (PACKAGE.parent / (name.replace(".", "/") + ".py")).exists()] or [target]
                found += [(module, t, node.lineno) for t in targets if t.startswith("rubrickit")]
            elif isinstance(node, ast.Import):
                found += [(module, a.name, node.lineno) for a in node.names if a.name.startswith("rubrickit")]
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # the root package itself is above every layer


def test_every_top_level_room_is_on_the_ladder() -> None:
    rooms = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").exists()}
    assert rooms == set(LEVEL), f"add new top-level modules to LADDER (and docs/architecture.md): {rooms ^ set(LEVEL)}"


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for source, target, line in imports():
        low, high = _layer(source), _layer(target)
        if low is None or high is None:
            continue
        if LEVEL[high] > LEVEL[low] and (source, target) not in KNOWN_UPWARD:
            upward.append(f"{source}:{line} imports {target} ({low} is below {high})")
    assert not upward, "\n".join(upward)


def test_no_module_imports_the_package_root() -> None:
    """``import rubrickit`` from inside the package is an upward import to the top of the ladder (the CLI excepted:
    it is meant to use the public API)."""
    offenders = [f"{s}:{line}" for s, t, line in imports() if t == "rubrickit" and _layer(s) not in (None, "cli")]
    assert not offenders, offenders


def test_import_contracts_hold() -> None:
    """``.importlinter``: the same ladder as a layers contract, and no import cycle between siblings at any depth
    (checked by import-linter, a well-kept tool, on the import graph grimp builds from the source)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed (it is in the dev extra: make test installs it)")
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_importing_the_root_loads_nothing_else() -> None:
    loaded = {m for m in _loaded_after("import rubrickit") if m.startswith("rubrickit")}
    assert loaded <= {"rubrickit", "rubrickit._util", "rubrickit._util.lazy"}, loaded


@pytest.mark.parametrize("heavy", ["rubrickit.judge", "rubrickit.backends", "rubrickit.generate", "jinja2", "numpy"])
def test_the_rubric_core_loads_no_judge_no_templates_no_numpy(heavy: str) -> None:
    loaded = _loaded_after("import rubrickit.rubric.aggregation, rubrickit.rubric.lint, rubrickit.rubric.diff")
    assert not {m for m in loaded if m == heavy or m.startswith(heavy + ".")}


def test_root_names_resolve_lazily_to_the_defining_objects() -> None:
    import rubrickit
    from rubrickit.rubric import aggregation
    from rubrickit.rubric.formats import convert

    assert rubrickit.aggregate is aggregation.aggregate
    assert rubrickit.convert_file is convert.convert
    assert set(rubrickit.__all__) <= set(dir(rubrickit))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rubrickit.nope  # noqa: B018


def test_module_names_are_not_shadowed_by_functions() -> None:
    """``import rubrickit.aggregate`` used to return the function; no public name is also a submodule now."""
    import rubrickit

    clashes = [n for n in rubrickit.__all__ if (PACKAGE / f"{n}.py").exists() or (PACKAGE / n).is_dir()]
    assert not clashes


def test_the_root_type_checking_imports_match_its_lazy_exports() -> None:
    """The ``TYPE_CHECKING`` block (what IDEs see) names the same objects as ``_EXPORTS`` (what runs)."""
    import rubrickit

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))
    seen = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            module = "." * node.level + (node.module or "")
            seen[alias.asname or alias.name] = module if alias.asname is None else f"{module}:{alias.name}"
    assert seen == rubrickit._EXPORTS


def test_the_architecture_page_draws_this_ladder_and_names_only_files_that_exist() -> None:
    """docs/architecture.md's table holds the LADDER top to bottom, and every module or folder it names in a row
    (``engine.py``, ``checks/``) exists in that row's folders."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    rows = [line.split(" | ") for line in page.splitlines() if line[:4].strip("| ").isdigit()]
    levels = [[name.strip("`/").removesuffix(".py") for name in folders.split(", ")] for _, folders, _ in rows]
    assert [set(names) for names in levels] == [set(names) for names in LADDER[::-1]]
    missing = []
    for _, folders, owns in rows:
        roots = [PACKAGE / name.strip("`/").removesuffix(".py") for name in folders.split(", ")]
        for name in {token.strip("`") for token in owns.split() if token.startswith("`")}:
            name = name.rstrip("`),;:")
            stem = name.removesuffix(".py").rstrip("/")
            if not stem.replace("_", "").replace("/", "").isalnum() or not name.endswith((".py", "/")):
                continue  # a class, function or option, not a module
            paths = [root / f"{stem}.py" for root in roots] + [root / stem for root in roots]
            paths += [PACKAGE / f"{stem}.py", PACKAGE / stem]  # `errors.py`, or another room named in the row
            if not any(path.exists() for path in paths):
                missing.append(name)
    assert not missing, f"docs/architecture.md names modules that are not in their folder: {sorted(missing)}"
