"""GGUF files into verified safetensors model folders: the one conversion the embedded default and a user's GGUF share.

Invariants:
- Offline: the file is read by transformers' own GGUF loader (which dequantizes to float32); nothing is fetched.
- Verified or nothing: the folder is written under a temporary name beside the target and renamed into place only
  after its reload reproduces the GGUF-loaded model bit for bit: equal logits (`torch.equal`) on a probe of token ids
  valid for this model's vocabulary, and an equal fingerprint. Otherwise the temporary folder is removed and the
  target is left as it was, so a half-written or wrong folder is never used.
- Every weight comes from the file: a load in which transformers would initialise a parameter itself (a tensor the
  file lacks, or one whose shape the rebuilt config does not expect) is refused, naming the tensors.
- Idempotent: a target whose `steerwarm.json` records a file of the same size and sha256 is reused as it is; a target
  prepared from another file is rebuilt only when the caller allows it (`replace`) or asks (`force`).
- An architecture transformers cannot read is refused before any weight is read, with an error naming it and the
  architectures it can read.
- The fingerprint function is passed in by the caller (`steerwarm.model.load.fingerprint`), so this module stays
  below the loader and the one definition of a fingerprint stays there.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

META_FILE = "steerwarm.json"
PROBE_TOKENS = 9
# llama.cpp's names for architectures that transformers' loader knows under another name (the loader renames them).
_LOADER_ALIASES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}


class GGUFError(RuntimeError):
    """A GGUF file cannot become a model folder (unreadable architecture, incomplete weights); the message says why."""


@dataclass(frozen=True)
class PrepareResult:
    path: Path
    fingerprint: str
    created: bool
    seconds: float


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def slug(stem: str) -> str:
    """A model name from a file stem: lower case, runs of anything but letters, digits and `_` become one `-`."""
    return re.sub(r"[^a-z0-9_]+", "-", stem.lower()).strip("-") or "model"


def readable_architectures() -> list[str]:
    """GGUF architectures (`general.architecture`) the installed transformers can rebuild a model from."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
    from transformers.integrations.gguf.gguf_config_mapping import GGUF_CONFIG_ARCHS

    names = (set(GGUF_CONFIG_MAPPING) | set(GGUF_CONFIG_ARCHS)) - {"general", "tokenizer"}
    aliases = {alias for alias, name in _LOADER_ALIASES.items() if name in names}
    return sorted(names - set(_LOADER_ALIASES.values()) | aliases)


def architecture(path: Path) -> str:
    """The file's `general.architecture`, read from its header alone."""
    from transformers.integrations.gguf.reader import read_gguf_metadata

    try:
        metadata, _ = read_gguf_metadata(str(path))
    except Exception as exc:  # the reader raises several kinds on a file that is not GGUF
        raise GGUFError(f"{path} is not a readable GGUF file: {exc}") from exc
    return str(metadata.get("general.architecture", "?"))


def check_readable(path: Path) -> str:
    """The file's architecture, or a GGUFError naming it and the ones transformers can read."""
    arch = architecture(path)
    readable = readable_architectures()
    if arch not in readable:
        raise GGUFError(f"{path.name}: transformers cannot read GGUF architecture {arch!r}; it reads "
                        f"{', '.join(readable)}. Convert the original Hugging Face folder instead (pass its path as "
                        "--model).")
    return arch


def probe_ids(vocab_size: int, n: int = PROBE_TOKENS) -> list[int]:
    """`n` token ids spread over the whole vocabulary (first and last included), so any model can run them."""
    if vocab_size < 1:
        raise GGUFError("the model has an empty vocabulary")
    return [round(i * (vocab_size - 1) / max(1, n - 1)) for i in range(n)]


def probe_logits(model: PreTrainedModel) -> torch.Tensor:
    """The model's float32 logits on `probe_ids` of its vocabulary (one row)."""
    import torch

    ids = torch.tensor([probe_ids(int(model.config.vocab_size))], device=model.device)
    with torch.no_grad():
        logits: torch.Tensor = model(input_ids=ids).logits
    return logits.float().cpu()


def _read_meta(target: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((target / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _has_weights(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()


def _load_from_file(gguf: Path) -> tuple[Any, PreTrainedModel]:
    """Tokenizer and float32 model from the file, refusing a load in which any parameter is not the file's."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # Mismatched shapes are let through here only to be named and refused below.
        loaded: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                           output_loading_info=True, ignore_mismatched_sizes=True)
    except (ValueError, KeyError, NotImplementedError, RuntimeError, OSError) as exc:
        raise GGUFError(f"transformers could not rebuild a causal LM from {gguf.name} "
                        f"(architecture {architecture(gguf)!r}): {str(exc).strip().splitlines()[-1]}") from exc
    model: PreTrainedModel = loaded[0]
    info: dict[str, Any] = loaded[1]
    missing = sorted(map(str, info.get("missing_keys") or ())) + sorted(
        f"{key[0]} {tuple(key[1])} in the file, {tuple(key[2])} expected" if isinstance(key, tuple) else str(key)
        for key in info.get("mismatched_keys") or ())
    if missing:
        raise GGUFError(f"{gguf.name} does not hold every weight the rebuilt {model.config.model_type} model needs "
                        f"({'; '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
                        "nothing was installed")
    # save_pretrained refuses a GGUF-loaded model until the quantizer traces are removed.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # The loader may hand back transposed views (GPT-2's Conv1D weights); a reload's are contiguous, and a matmul over
    # the other memory layout rounds differently. Same values, the saved folder's layout, so the probe can be exact.
    with torch.no_grad():
        for param in model.parameters():
            if not param.is_contiguous():
                param.data = param.data.contiguous()
    model.eval()  # type: ignore[no-untyped-call]
    return tok, model


def convert(gguf: Path, target: Path, *, fingerprint: Callable[[PreTrainedModel], str], meta: dict[str, Any],
            force: bool = False, replace: bool = False) -> PrepareResult:
    """Make `target` a verified safetensors folder of the GGUF file `gguf` (see the module invariants).

    `meta`: extra facts for `steerwarm.json` (name, description); the source path, its size and sha256, the fingerprint
    and the time are added here. `replace`: a target prepared from another file is rebuilt (else refused)."""
    import torch
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    gguf = gguf.expanduser().resolve()
    size = gguf.stat().st_size
    old = _read_meta(target) if _has_weights(target) else None
    if old is not None and not force:
        if old.get("gguf_size") == size and old.get("gguf_sha256") == file_sha256(gguf):
            return PrepareResult(target, str(old["fingerprint"]), False, time.perf_counter() - start)
        if not replace:
            raise GGUFError(f"{target} already holds a model prepared from {old.get('source', 'another file')}; "
                            "pass --force to replace it, or choose another --name")
    check_readable(gguf)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok, model = _load_from_file(gguf)
    fp = fingerprint(model)
    want = probe_logits(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        del model
        gc.collect()  # one float32 copy in memory at a time
        reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype=torch.float32)
        reloaded.eval()  # type: ignore[no-untyped-call]
        if fingerprint(reloaded) != fp or not torch.equal(probe_logits(reloaded), want):
            raise GGUFError(f"the prepared copy of {gguf.name} does not reproduce the GGUF model; nothing was "
                            "installed")
        del reloaded
        record = {**meta, "source": str(gguf), "architecture": architecture(gguf), "gguf_sha256": file_sha256(gguf),
                  "gguf_size": size, "fingerprint": fp,
                  "prepared": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / META_FILE).write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PrepareResult(target, fp, True, time.perf_counter() - start)
