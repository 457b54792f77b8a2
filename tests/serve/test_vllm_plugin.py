"""The vLLM plugin's parts that need no vLLM: request parsing, per-layer terms, vectors checked against a
fingerprint read from the model's files (tests/vllm runs the plugin inside a real vLLM)."""

from __future__ import annotations

from pathlib import Path

import pytest

import steerwarm.model.load as load_module
from steerwarm.model.load import LoadedModel, ModelNotFoundError, fingerprint, fingerprint_files
from steerwarm.serve.errors import APIError
from steerwarm.serve.registry import SteeringRegistry, write_provisional_dial
from steerwarm.serve.vllm_plugin import ENV_VECTORS, FolderModel, _layer_coefs, registry_for, row_steering
from tests.conftest import random_vector


def _saved(loaded: LoadedModel, folder: Path) -> Path:
    loaded.model.save_pretrained(folder)
    return folder


def test_fingerprint_from_files_equals_the_loaded_models(family: LoadedModel, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _saved(family, tmp_path / "m")
    if family.name == "tiny-gpt_neox":  # saved under its legacy key names (embed_out), renamed only on load
        with pytest.raises(ModelNotFoundError, match=r"'lm_head\.weight' of GPTNeoXForCausalLM is not in"):
            fingerprint_files(folder)
        return
    assert fingerprint_files(folder) == fingerprint(family.model)
    monkeypatch.setattr(load_module, "WHOLE_READ_ELEMENTS", 0)  # the row-by-row reads of large tensors
    assert fingerprint_files(folder) == fingerprint(family.model)


@pytest.mark.slow
def test_fingerprint_from_files_of_the_default_model(real: LoadedModel) -> None:
    assert fingerprint_files(real.path) == real.fingerprint


def _registry(loaded: LoadedModel, tmp_path: Path) -> SteeringRegistry:
    vec = random_vector(loaded, layers=[1], name="contrast")
    write_provisional_dial(vec, tmp_path / "vec", coef_at_one=0.5)
    vec.save(tmp_path / "vec" / "contrast.safetensors")
    facts = FolderModel.read(str(_saved(loaded, tmp_path / "m")))
    return SteeringRegistry.from_dir(tmp_path / "vec", facts)


def test_request_fields_resolve_like_the_server(tiny: LoadedModel, tmp_path: Path) -> None:
    reg = _registry(tiny, tmp_path)
    assert reg.dial is not None
    row = row_steering({"warmth": 1.0, "steering": '{"vector": "contrast", "coef": 0.2, "layers": [0, 1]}'}, reg)
    assert row.warmth == 1.0 and row.raw[0].vector == "contrast" and row.raw[0].layers == (0, 1)
    coefs = _layer_coefs(row, reg)
    assert coefs == {0: {"contrast": 0.2}, 1: {"warm": 0.5, "contrast": 0.2}}
    assert _layer_coefs(row_steering({}, reg), reg) == {}  # no fields: nothing at all
    assert _layer_coefs(row_steering({"warmth": -1}, reg), reg) == {1: {"cold": 0.5}}


@pytest.mark.parametrize(("args", "param", "text"), [
    ({"warmth": "hot"}, "warmth", "finite number"),
    ({"warmth": True}, "warmth", "finite number"),
    ({"warmth": 7.0}, "warmth", "within"),
    ({"steering": "{not json"}, "steering", "JSON"),
    ({"steering": {"vector": "nope", "coef": 0.1}}, "steering.vector", "unknown vector"),
    ({"steering": [{"vector": "contrast"}]}, "steering[0]", "coef"),
    ({"steering": {"vector": "contrast", "coef": 0.1, "layers": [7]}}, "steering.layers", "no direction"),
])
def test_bad_fields_are_400s_naming_the_parameter(tiny: LoadedModel, tmp_path: Path, args: dict[str, object],
                                                  param: str, text: str) -> None:
    reg = _registry(tiny, tmp_path)
    with pytest.raises(APIError) as info:
        row_steering(args, reg)
    assert info.value.status == 400 and info.value.param == param and text in info.value.message


def test_vectors_for_another_model_disable_the_dial_with_the_reason(tiny: LoadedModel, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    other = random_vector(tiny, layers=[1], name="warm")
    other = type(other)(dict(other.directions), dict(other.norms), "sw1-not-this-model", "other", other.provenance,
                        name="warm", layers=[1])
    write_provisional_dial(other, tmp_path / "vec", coef_at_one=0.5)
    model = str(_saved(tiny, tmp_path / "m"))
    monkeypatch.setenv(ENV_VECTORS, str(tmp_path / "vec"))
    reg = registry_for(model)
    assert reg.dial is None and "sw1-not-this-model" in reg.skipped["warm"]
    assert row_steering({"warmth": 0}, reg).warmth == 0.0  # warmth 0 is always served
    with pytest.raises(APIError) as info:
        row_steering({"warmth": 0.5}, reg)
    assert info.value.code == "dial_unavailable" and "sw1-not-this-model" in info.value.message
