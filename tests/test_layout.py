"""The package is the pipeline: stages import only stages below them, no module imports itself back through a
cycle, and no underscore name crosses a module boundary. Read from the source with `ast`, nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "steerwarm"

# Pipeline order, lowest first. A module of stage i may import modules of stages 0..i only; stages on one line
# (a tuple) are peers that must not import each other.
STAGES: list[tuple[str, ...]] = [
    ("__init__",),
    ("paths", "records", "plots"),
    ("corpus",),
    ("model",),
    ("steer",),
    ("finetune",),
    ("directions",),
    ("targets",),
    ("meter",),
    ("calibrate",),
    ("bench",),
    ("sweep",),
    ("inspect",),
    ("serve",),
    ("cli",),
]
RANK = {name: i for i, names in enumerate(STAGES) for name in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every steerwarm import in the file, at any depth."""
    out: list[tuple[str, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "steerwarm"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "steerwarm":
            assert node.level == 0, f"{path}:{node.lineno}: use absolute imports"
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, "", node.lineno) if sub in known else (node.module, a.name, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {target for target, _, _ in imports(p, set(mods)) if target in mods and target != m}
            for m, p in mods.items()}


def test_every_stage_is_named() -> None:
    unknown = {stage(m) for m in modules()} - set(RANK)
    assert not unknown, f"add these packages to STAGES in pipeline order: {sorted(unknown)}"


def test_no_lower_stage_imports_a_higher_one() -> None:
    mods = modules()
    bad = []
    for m, p in mods.items():
        for target, _, line in imports(p, set(mods)):
            mine, theirs = stage(m), stage(target)
            if RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] and theirs != mine):
                bad.append(f"{p.relative_to(SRC.parent)}:{line}: {mine} imports {target} ({theirs})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(g[m]):
            if state.get(n) == 1:
                cycles.append([*path[path.index(n):], n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_crosses_a_module() -> None:
    mods = modules()
    bad = [f"{p.relative_to(SRC.parent)}:{line}: {target}.{name}"
           for m, p in mods.items() for target, name, line in imports(p, set(mods))
           if name.startswith("_") and name != "__version__"]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("code, expect", [
    ("from steerwarm.cli.app import app\n", "imports steerwarm.cli.app"),
])
def test_the_checker_catches_a_layering_violation(tmp_path: Path, code: str, expect: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule is not vacuous: a model module importing the CLI is reported."""
    fake = tmp_path / "steerwarm"
    (fake / "model").mkdir(parents=True)
    (fake / "cli").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "model" / "__init__.py").write_text("")
    (fake / "cli" / "__init__.py").write_text("")
    (fake / "cli" / "app.py").write_text("app = 1\n")
    (fake / "model" / "load.py").write_text(code)
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", fake)
    with pytest.raises(AssertionError, match=expect):
        test_no_lower_stage_imports_a_higher_one()


def test_pyproject_lists_every_package() -> None:
    """The wheel carries exactly the packages under src/ plus the two data-only ones (see pyproject.toml)."""
    import tomllib

    config = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(SRC.parent).parts) for p in SRC.rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | {"steerwarm.shipped", "steerwarm.evaldata"}


def test_no_module_computes_a_path_from_its_own_file() -> None:
    """Paths are resolved in steerwarm.paths alone (package data through the import system)."""
    bad = [str(p.relative_to(SRC.parent)) for p in SRC.rglob("*.py")
           if p.name != "paths.py" and ("__file__" in p.read_text() or "parents[" in p.read_text())]
    assert not bad, bad
