"""A fake OpenAI-compatible chat-completions endpoint served over real HTTP on 127.0.0.1, for rewrite tests.

It plays the rewriting model with the rules backend (reading the style from the system prompt's first line and the
reply between the prompt's reply tags), and can be scripted to answer HTTP errors, to fail for good after a number
of calls, or to return a rewrite that breaks a check on the first attempt for chosen replies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from steerwarm.corpus.prompts import REPLY_CLOSE, REPLY_OPEN, STYLE_LINE
from steerwarm.corpus.rules import cold, warm


@dataclass
class Script:
    errors: list[int] = field(default_factory=list)  # statuses answered to the first calls, in order
    fail_after: int | None = None  # from this many calls on, answer 500 for good
    spoil_first: set[str] = field(default_factory=set)  # substrings of replies whose first rewrite breaks a check
    spoil_always: set[str] = field(default_factory=set)  # ... whose every rewrite breaks a check
    calls: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def answer(body: dict[str, Any], script: Script) -> str:
    msgs = body["messages"]
    style = next(s for s, line in STYLE_LINE.items() if msgs[0]["content"].startswith(line))
    user = msgs[1]["content"]
    neutral = user[user.index(REPLY_OPEN) + len(REPLY_OPEN) + 1:user.index(REPLY_CLOSE) - 1]
    prompt = user[user.rindex("[user]\n") + 7:user.index("\n</conversation>")]
    text = warm(neutral, prompt) if style == "warm" else cold(neutral)
    retry = len(msgs) > 2
    if any(s in neutral for s in script.spoil_always) or (not retry and any(s in neutral for s in script.spoil_first)):
        text += " 🙂"  # breaks the emoji check
    return text


@contextmanager
def serve(script: Script) -> Iterator[str]:
    """Serve the fake on a free port; yields the base URL (…/v1)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.calls += 1
                n = script.calls
                script.requests.append(body)
                status = script.errors.pop(0) if script.errors else 200
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            if script.fail_after is not None and n > script.fail_after:
                status = 500
            if status != 200:
                headers = {"Retry-After": "0"} if status == 429 else {}
                return self._send(status, {"error": {"message": f"scripted {status}", "type": "server_error"}},
                                  headers)
            self._send(200, {
                "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": answer(body, script)}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
