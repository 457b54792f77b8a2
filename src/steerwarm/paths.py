"""Every path steerwarm reads or writes by default, resolved in this one module.

- What steerwarm builds outside git (prepared models, merged fine-tunes, activation shards, runs) lives under
  `$STEERWARM_HOME`, else the user cache dir, so a test points the whole library elsewhere with one variable.
- What ships with steerwarm is package data, found through the import system, so an editable checkout and a wheel
  installed anywhere find the same files: the shipped vectors and fine-tune adapters (the repository's `vectors/`,
  installed as the package `steerwarm.shipped`), the default benchmark items and contexts (the repository's
  `eval/items` and `eval/contexts`, installed as `steerwarm.evaldata`) and the warmth corpus (`steerwarm.corpus`).
  `$STEERWARM_VECTORS` and `$STEERWARM_EVAL_DATA` point a run at other folders of the same layout.
- The paper's data sets are never shipped: `$STEERWARM_SHARED_DATA`, else `shared/data` beside the source checkout
  or beside the working directory (the layout of this project's workplace).

Invariant: no other module computes a path from `__file__`; they ask here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir


def steerwarm_home() -> Path:
    """The root folder for steerwarm's cached artefacts (created on demand by callers)."""
    env = os.environ.get("STEERWARM_HOME")
    return Path(env).expanduser() if env else Path(user_cache_dir("steerwarm"))


def models_dir() -> Path:
    return steerwarm_home() / "models"


def package_dir(package: str) -> Path:
    """The folder of an installed package of ours (regular or data-only), wherever it is installed."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(f"package data {package!r} is not installed; reinstall steerwarm")
    return Path(locations[0])


def _env_dir(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None


def shipped_vectors() -> Path:
    """The folder of the calibrated dial (`warm.safetensors`, `cold.safetensors`) and the other shipped vectors."""
    return _env_dir("STEERWARM_VECTORS") or package_dir("steerwarm.shipped")


def shipped_finetunes() -> Path:
    """The folder of the shipped fine-tune adapters, one subfolder per variant (`warm`, `cold`)."""
    return shipped_vectors() / "finetunes"


def eval_data() -> Path:
    """The folder of our default benchmark items (`items/TASK.jsonl`) and contexts (`contexts/default.json`)."""
    return _env_dir("STEERWARM_EVAL_DATA") or package_dir("steerwarm.evaldata")


def default_items(task: str) -> Path:
    return eval_data() / "items" / f"{task}.jsonl"


def default_contexts() -> Path:
    return eval_data() / "contexts" / "default.json"


def corpus_data() -> Path:
    """The shipped warmth corpus: `SPLIT/QUERY_TYPE.jsonl`."""
    return package_dir("steerwarm.corpus") / "data"


def source_checkout() -> Path | None:
    """The repository folder when steerwarm runs from a source checkout (an editable install), else None."""
    here = package_dir("steerwarm")
    root = here.parent.parent
    return root if here.parent.name == "src" and (root / "pyproject.toml").is_file() else None


def shared_data() -> Path:
    """The paper's data folder. It may be absent: callers that need it check `is_dir()` and say so."""
    env = _env_dir("STEERWARM_SHARED_DATA")
    if env is not None:
        return env
    checkout = source_checkout()
    candidates = ([checkout.parent / "shared" / "data"] if checkout else []) + [
        Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def paper_summary_data() -> Path:
    """The paper's published per-model result tables (`results_*.csv`)."""
    return shared_data() / "warm_ai_2025" / "summary_data"


def display(path: str | Path) -> str:
    """A path as committed reports and cards name it: relative to the source checkout or to the working folder,
    `$STEERWARM_HOME/...` under the home, `$STEERWARM_SHARED_DATA/...` under the paper's data folder, else the bare
    file name, never a machine's absolute path."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return p.as_posix()
    p = p.resolve()
    bases = [("$STEERWARM_HOME", steerwarm_home().resolve()), ("$STEERWARM_SHARED_DATA", shared_data().resolve())]
    checkout = source_checkout()
    if checkout is not None:
        bases.append(("", checkout.resolve()))
    bases.append(("", Path.cwd().resolve()))
    for label, base in bases:
        if p == base or base in p.parents:
            rel = p.relative_to(base).as_posix()
            return (f"{label}/{rel}" if rel != "." else label) if label else rel
    return p.name


PATH_KEYS = frozenset({"path", "dir", "file", "vectors_dir", "sweep_dir", "cache", "finetune_path", "source"})


def display_paths(value: Any, keys: frozenset[str] = PATH_KEYS) -> Any:
    """A copy of a JSON-like record with every absolute path held under one of `keys`, or under a key ending in
    `_path`, `_dir` or `_file` (at any depth), in `display` form; other values unchanged. For settings and provenance
    written by older versions, before they reach a committed report or card, and for comparing them with settings
    written now (`display` is idempotent)."""
    if isinstance(value, dict):
        return {k: display(v) if (k in keys or k.endswith(("_path", "_dir", "_file"))) and isinstance(v, str)
                and Path(v).expanduser().is_absolute()
                else display_paths(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [display_paths(v, keys) for v in value]
    return value
