"""The warmth playground (`GET /` of `steerwarm serve`) on one real server: the default model, the shipped calibrated
vectors and an API key.

- Over plain HTTP: the page and its assets are served without a key, with their content types, and everything the
  page loads comes from the server itself; the API stays behind the key.
- In a real browser (Debian's chromium, driven by Playwright; no browser is downloaded): the page asks for the key
  with the API's own message, reads the dial's range from GET /v1/models, the slider moves the warmth of the request
  it shows, a compare run at -1, 0, +1 streams three answers that equal the API's greedy answers for the same
  requests (text, token count and warmth projection; fetched with the official `openai` client), the page's curl
  and Python snippets make exactly the requests the page sent (run by bash and Python with `curl` and `OpenAI`
  recording their arguments), and a wrong key shows the API's error message. The run saves a screenshot of the
  compare view to docs/playground.png (shown in the README).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openai
import pytest
from openai import OpenAI
from playwright.sync_api import Page, expect, sync_playwright

from steerwarm.serve.playground import ASSETS, PAGE, read_asset
from tests.serve.conftest import RunningServer, serve
from tests.system_tools import require_binary

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "playground.png"
KEY = "playground-key"
MODEL = "smollm2-135m"
SYSTEM = "You are a helpful assistant."
MESSAGE = "I failed my exam today. What's wrong with me?"  # a quote for the snippets' quoting
MAX_TOKENS = 12
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
GENERATION_TIMEOUT_MS = 180_000  # three 12-token answers on a busy 2-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("playground")
    with serve(["--api-key", KEY, "--threads", "2"], root / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key=KEY, max_retries=0, timeout=300)


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_the_page_and_its_assets_are_served_without_a_key(server: RunningServer) -> None:
    status, ctype, page = _get(server.base_url + "/")
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    assert page == read_asset(PAGE)
    html = page.decode()
    linked = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sorted(u for u in linked if not u.startswith("data:")) == sorted(f"/playground/{n}" for n in ASSETS)
    for name, media in ASSETS.items():
        status, ctype, body = _get(f"{server.base_url}/playground/{name}")
        assert (status, ctype, body) == (200, media, read_asset(name))
        assert "http://" not in body.decode() and "https://" not in body.decode()  # nothing from a CDN
    status, ctype, body = _get(f"{server.base_url}/playground/../routes.py")
    assert status == 404 and ctype == "application/json"
    status, _, body = _get(f"{server.base_url}/playground/server.py")
    assert status == 404 and b"no playground file 'server.py'" in body
    assert _get(server.v1 + "/models")[0] == 401  # the page is public, the API is not


def _api_answer(client: OpenAI, warmth: float) -> Any:
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": MESSAGE}],
        temperature=0, max_tokens=MAX_TOKENS, extra_body={"warmth": warmth})


def _python_snippet_requests(snippet: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[Any]]:
    """Run the page's Python snippet with `openai.OpenAI` recording instead of sending: (client kwargs, bodies)."""
    made: dict[str, Any] = {}
    bodies: list[Any] = []

    class Recorder:
        def __init__(self, **kwargs: Any) -> None:
            made.update(kwargs)
            self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

        def create(self, **kwargs: Any) -> Any:
            extra = kwargs.pop("extra_body", {})
            bodies.append({**kwargs, **extra})
            return SimpleNamespace(model_extra={"steering": {"warmth": 0, "warmth_projection": 0}},
                                   choices=[SimpleNamespace(message=SimpleNamespace(content=""))])

    monkeypatch.setattr(openai, "OpenAI", Recorder)
    monkeypatch.setenv("STEERWARM_API_KEY", KEY)
    exec(compile(snippet, "playground-snippet.py", "exec"), {"print": lambda *_: None})
    return made, bodies


def _curl_snippet_requests(snippet: str, folder: Path) -> list[list[str]]:
    """Run the page's curl snippet in bash with `curl` writing its arguments to a file of its own instead of sending
    (the compare snippet runs one curl per warmth in the background): one list per call."""
    folder.mkdir(parents=True, exist_ok=True)
    script = f"curl() {{ printf '%s\\0' \"$@\" > {shlex.quote(str(folder))}/call-$BASHPID; }}\n" + snippet
    subprocess.run(["bash", "-c", script], check=True, timeout=30,
                   env={"PATH": os.environ["PATH"], "STEERWARM_API_KEY": KEY})
    return [f.read_text().split("\0")[:-1] for f in sorted(folder.glob("call-*"))]


def _api_error_message(server: RunningServer, key: str) -> str:
    with pytest.raises(openai.AuthenticationError) as caught:
        OpenAI(base_url=server.v1, api_key=key, max_retries=0).models.list()
    body = caught.value.body
    assert isinstance(body, dict)
    return str(body["message"])


def _move_slider(page: Page, client: OpenAI, monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """The slider spans the served range, moves by keyboard, and its value is the warmth of the request on screen."""
    dial = client.models.list().data[0].model_extra["steerwarm"]["dial"]  # type: ignore[index]
    assert dial["enabled"]
    slider = page.locator("#warmth")
    assert [float(slider.get_attribute(a) or "nan") for a in ("min", "max")] == list(dial["range"])
    page.get_by_label("One value (slider)").check()
    slider.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    expect(page.locator("#warmth-value")).to_have_text("+0.20")
    _, bodies = _python_snippet_requests(page.locator("#snippet-python").text_content() or "", monkeypatch)
    calls = _curl_snippet_requests(page.locator("#snippet-curl").text_content() or "", folder)
    assert [b["warmth"] for b in bodies] == [0.2] and [json.loads(c[c.index("-d") + 1]) for c in calls] == bodies
    page.keyboard.press("End")
    expect(page.locator("#warmth-value")).to_have_text(f"+{dial['range'][1]:.2f}")
    page.get_by_label("Compare values side by side").check()
    expect(page.locator("#warmth")).to_be_hidden()
    expect(page.get_by_label("Warmth values")).to_have_value("-1, 0, 1")


def _check_snippets(page: Page, server: RunningServer, sent: list[Any], monkeypatch: pytest.MonkeyPatch,
                    folder: Path) -> None:
    """The curl and Python snippets on screen make the requests the page sent (less the streaming fields)."""
    for body in sent:
        assert body.pop("stream") is True and body.pop("stream_options") == {"include_usage": True}
    assert [b["warmth"] for b in sent] == [-1, 0, 1]
    made, bodies = _python_snippet_requests(page.locator("#snippet-python").text_content() or "", monkeypatch)
    assert made == {"base_url": server.v1, "api_key": KEY} and bodies == sent
    calls = _curl_snippet_requests(page.locator("#snippet-curl").text_content() or "", folder)
    assert len(calls) == 3
    for call in calls:
        assert call[0] == server.v1 + "/chat/completions"
        headers = [call[i + 1] for i, arg in enumerate(call) if arg == "-H"]
        assert headers == ["Content-Type: application/json", f"Authorization: Bearer {KEY}"]
    assert sorted((json.loads(c[c.index("-d") + 1]) for c in calls), key=lambda b: b["warmth"]) == sent


def test_the_playground_in_chromium(server: RunningServer, client: OpenAI, monkeypatch: pytest.MonkeyPatch,
                                    tmp_path: Path) -> None:
    chromium = require_binary("chromium", "Debian package chromium")
    wrong = _api_error_message(server, "wrong-key")
    status, _, body = _get(server.v1 + "/models")  # no key: the API's own message
    assert status == 401
    missing = json.loads(body)["error"]["message"]
    requested: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                        args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            page = browser.pages[0] if browser.pages else browser.new_page()
            page.on("request", lambda r: requested.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.base_url + "/")
            expect(page.locator("#server-status")).to_have_text(f"Error 401: {missing}")
            page.get_by_label("API key").fill(KEY)
            page.get_by_label("API key").press("Enter")
            expect(page.locator("#server-status")).to_contain_text(f"Model {MODEL}")
            _move_slider(page, client, monkeypatch, tmp_path / "single")

            page.get_by_label("System prompt").fill(SYSTEM)
            page.locator("#message").fill(MESSAGE)
            page.get_by_label("Temperature").fill("0")
            page.get_by_label("Max tokens").fill(str(MAX_TOKENS))
            sent: list[Any] = []
            page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/completions") else None)
            page.locator("#message").press("Control+Enter")
            with ThreadPoolExecutor(3) as pool:  # the API's own answers, batched with the page's
                expected = list(pool.map(lambda w: _api_answer(client, w), [-1.0, 0.0, 1.0]))
            expect(page.locator("#answers")).to_have_attribute("data-done", re.compile(r"\d+"),
                                                               timeout=GENERATION_TIMEOUT_MS)
            answers = page.locator("#answers .answer")
            expect(answers).to_have_count(3)
            for i, (warmth, api) in enumerate(zip([-1, 0, 1], expected, strict=True)):
                card = answers.nth(i)
                assert card.get_attribute("data-warmth") == str(warmth)
                assert card.get_attribute("data-state") == "done (max tokens)"
                assert card.locator(".answer-text").text_content() == api.choices[0].message.content
                assert api.usage.completion_tokens == MAX_TOKENS
                expect(card.locator(".tokens")).to_have_text(f"{MAX_TOKENS} tokens")
                expect(card.locator(".speed")).to_have_text(re.compile(r"^\d+\.\d tok/s$"))
                projection = api.model_extra["steering"]["warmth_projection"]
                # float32 sums in another batch layout: equal to about 1e-7, not bit for bit
                assert float(card.locator(".gauge").get_attribute("data-value") or "nan") == \
                    pytest.approx(projection, abs=1e-5)
                expect(card.locator(".gauge-value")).to_have_text(re.compile(r"^-?\d\.\d{3}$"))
            _check_snippets(page, server, sent, monkeypatch, tmp_path / "compare")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            page.get_by_label("API key").fill("wrong-key")
            page.get_by_label("API key").press("Enter")
            expect(page.locator("#server-status")).to_have_text(f"Error 401: {wrong}")
            page.get_by_role("button", name="Send").click()
            expect(answers).to_have_count(3)
            for i in range(3):
                expect(answers.nth(i).locator(".answer-error")).to_have_text(f"Error 401: {wrong}")
        finally:
            browser.close()
    assert errors == []
    assert requested and all(u.startswith(server.base_url + "/") or u.startswith("data:") for u in requested)
