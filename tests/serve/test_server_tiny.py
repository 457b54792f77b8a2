"""A real server on the tiny random model (saved to a folder): start-up without a calibrated dial, raw steering by
name, vectors for other models skipped, no API key, n>1 streams. Fast: the tiny model loads in a blink."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from steerwarm.model.chat import chat_text
from steerwarm.model.load import LoadedModel, fingerprint, load
from steerwarm.steer.generate import GenerationConfig, generate_texts
from tests.conftest import make_tiny_model, make_tokenizer, random_vector
from tests.serve.conftest import RunningServer, serve


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-model") / "tiny"
    make_tiny_model(layers=3).save_pretrained(str(folder))
    make_tokenizer().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_loaded(tiny_dir: Path) -> LoadedModel:
    return load(str(tiny_dir))


@pytest.fixture(scope="module")
def server(tiny_dir: Path, tiny_loaded: LoadedModel, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningServer]:
    vectors = tmp_path_factory.mktemp("tiny-vectors")
    random_vector(tiny_loaded, [1], seed=4, name="probe").save(vectors / "probe.safetensors")
    random_vector(tiny_loaded, [1], seed=5, name="warm").save(vectors / "warm.safetensors")  # no calibration
    other = make_tiny_model(seed=9)
    foreign = random_vector(LoadedModel(other, tiny_loaded.tokenizer, "other", Path("."), fingerprint(other)), [1])
    foreign.save(vectors / "foreign.safetensors")
    with serve(["--model", str(tiny_dir), "--vectors", str(vectors), "--threads", "1"],
               vectors.parent / "tiny-server.log") as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key="unused", max_retries=0, timeout=120)


def test_without_a_calibrated_dial_warmth_is_refused_but_raw_steering_works(
        client: OpenAI, server: RunningServer, tiny_loaded: LoadedModel) -> None:
    card = client.models.list().data[0]
    info = (card.model_extra or {})["steerwarm"]
    assert card.id == "tiny" and sorted(info["vectors"]) == ["probe", "warm"]  # foreign model's vector skipped
    assert info["dial"]["enabled"] is False and "no dial calibration" in info["dial"]["note"]
    assert "skipped foreign" in server.log.read_text()  # start-up says which vectors it left out, and why
    messages = [{"role": "user", "content": "i feel sad today"}]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=messages, extra_body={"warmth": 0.5})
    assert "no calibrated dial is loaded" in str(err.value) and err.value.code == "dial_unavailable"
    base = client.chat.completions.create(model="tiny@warmth=0", messages=messages, max_tokens=10,
                                          temperature=0)
    want = generate_texts(tiny_loaded, [chat_text(tiny_loaded, messages)], config=GenerationConfig(max_new_tokens=10))
    assert base.choices[0].message.content == want[0]
    steered = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0,
                                             logprobs=True, top_logprobs=2,
                                             extra_body={"steering": {"vector": "probe", "coef": 3.0}})
    lp = steered.choices[0].logprobs
    assert lp is not None and lp.content is not None and len(lp.content[0].top_logprobs) == 2
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0,
                                           logprobs=True)
    assert plain.choices[0].logprobs is not None and plain.choices[0].logprobs.content is not None
    assert [t.logprob for t in lp.content] != [t.logprob for t in plain.choices[0].logprobs.content]
    applied = (steered.model_extra or {})["steering"]
    assert applied["vectors"] == [{"name": "probe", "layers": [1], "coef": 3.0, "source": "request"}]
    assert applied["warmth_projection"] is None and applied["monitor"] is None


def test_completions_stream_n_choices_with_seeds(client: OpenAI) -> None:
    kwargs = {"model": "tiny", "prompt": "hello how are you", "max_tokens": 8, "temperature": 1.0, "seed": 3, "n": 2}
    plain = client.completions.create(**kwargs)
    chunks = list(client.completions.create(stream=True, **kwargs))
    texts = ["", ""]
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.text
    assert texts == [c.text for c in plain.choices]
    assert {ch.index for c in chunks for ch in c.choices if ch.finish_reason} == {0, 1}
    steering = (chunks[-1].model_extra or {})["steering"]
    assert steering["warmth_projection_per_choice"] == [None, None]


def test_serve_refuses_a_missing_vectors_folder(tiny_dir: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "steerwarm.cli", "serve", "--model", str(tiny_dir), "--vectors",
                          str(tmp_path / "nope"), "--port", "1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    err = " ".join(out.stderr.split())
    assert "does not exist" in err and "--vectors" in err


def test_a_model_without_a_chat_template_serves_completions_and_says_why_chat_fails(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    make_tiny_model(layers=2).save_pretrained(str(folder))
    tok = make_tokenizer()
    tok.chat_template = None
    tok.save_pretrained(str(folder))
    (tmp_path / "no-vectors").mkdir()
    with serve(["--model", str(folder), "--vectors", str(tmp_path / "no-vectors"), "--threads", "1"],
               tmp_path / "server.log") as running:
        client = OpenAI(base_url=running.v1, api_key="unused", max_retries=0, timeout=120)
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="plain", messages=[{"role": "user", "content": "hello"}])
        assert err.value.code == "no_chat_template" and "--chat-template FILE" in str(err.value)
        done = client.completions.create(model="plain", prompt="hello how are you", max_tokens=4, temperature=0)
        assert done.usage is not None and done.usage.completion_tokens >= 1
