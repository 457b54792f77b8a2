"""The FastAPI app: OpenAI-compatible routes over the batching engine, with errors as OpenAI error objects, an optional
API key, a body size limit and Prometheus metrics.

Invariants:
- Handlers are thin: parse (protocol.py) -> resolve model, steering, tokens and limits -> submit to the engine ->
  shape the engine's events into OpenAI responses. All model work happens on the engine thread.
- Every client-caused failure is an `APIError` rendered as `{"error": {...}}` with its status (400, 401, 404, 413,
  429); anything unexpected is a 500 error object. No request can leave the server unable to serve the next one.
- With an API key configured, every route but /health and the playground's static page (`GET /`, see
  playground.py) needs `Authorization: Bearer <key>`, compared in constant time (`hmac.compare_digest`).
- Browser-borne requests (guard.py, when `guard` is given): Host checked against the bound address and an allowlist,
  JSON bodies only (415), CORS off unless origins are listed.
- A request whose client goes away is cancelled in the engine: streaming responses are cancelled by the ASGI server
  on disconnect; non-streaming handlers watch the connection while they wait.
- Every response (and the last chunk of every stream) carries the `steering` block.
- `GET /openapi.json` (no key) is openapi.py's document: the request and response models the routes use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from steerwarm.serve.chat import chat_response, prepare_chat
from steerwarm.serve.completions import completion_response, prepare_completion
from steerwarm.serve.errors import APIError
from steerwarm.serve.guard import Guard, GuardConfig
from steerwarm.serve.metrics import Metrics
from steerwarm.serve.models import model_card
from steerwarm.serve.openapi import openapi_document
from steerwarm.serve.playground import add_playground
from steerwarm.serve.protocol import (
    ModelList,
)
from steerwarm.serve.server import ClientGone, Server, ServerConfig, ServingEngine
from steerwarm.serve.streaming import stream

log = logging.getLogger("steerwarm.serve")
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/openapi.json")


class _MetricsMiddleware:
    """Counts every HTTP request by endpoint and status, and observes its latency to the last byte."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else ("/v1/models" if path.startswith("/v1/models/") else "other")
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe_request(endpoint, status[0], time.perf_counter() - start)


async def complete(server: Server, request: Request, kind: str) -> Response:
    body = await server.body.read(request)
    prep = prepare_chat(server, body) if kind == "chat" else prepare_completion(server, body)
    bridge, handles = server.submit(prep)
    if prep.stream:
        return StreamingResponse(stream(server, prep, bridge, handles), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        prompts, dones = await server.collect(request, prep, bridge, handles)
    except ClientGone:
        return Response(status_code=499)
    result = chat_response(server, prep, prompts, dones) if kind == "chat" else \
        completion_response(server, prep, prompts, dones)
    return JSONResponse(result.model_dump(mode="json"))


def create_app(engine: ServingEngine, config: ServerConfig, metrics: Metrics | None = None,
               *, manage_engine: bool = True, guard: GuardConfig | None = None) -> FastAPI:
    """The FastAPI app. With `manage_engine`, the engine's worker starts and stops with the app's lifespan. `guard`
    puts the browser-borne-request rules of guard.py in front of every route (`steerwarm serve` always does; an app
    embedded in tests or another server may leave them to its host)."""
    server = Server(engine, config, metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_engine:
            engine.start()
        try:
            yield
        finally:
            if manage_engine:
                engine.stop()

    app = FastAPI(title="steerwarm", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.server = server

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            msg = f"no route {request.method} {request.url.path}; see GET /v1/models, POST /v1/chat/completions, " \
                  "POST /v1/completions, GET /health, GET /metrics, GET / (the playground)"
        else:
            msg = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(APIError(exc.status_code, msg, code="not_found" if exc.status_code == 404 else None)
                            .body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        err = APIError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error")
        return JSONResponse(err.body(), status_code=500)

    document = openapi_document(app.version)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(document)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.served, "queue_depth": engine.queue_depth,
                "running_rows": engine.running_rows, "dial": server.registry.dial is not None}

    @app.get("/metrics")
    async def metrics_route(request: Request) -> PlainTextResponse:
        server.check_auth(request)
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        server.check_auth(request)
        return JSONResponse(ModelList(data=[model_card(server)]).model_dump(mode="json"))

    @app.get("/v1/models/{model_id:path}")
    async def get_model(request: Request, model_id: str) -> JSONResponse:
        server.check_auth(request)
        server.model_warmth(model_id)
        return JSONResponse(model_card(server).model_dump(mode="json"))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        server.check_auth(request)
        return await complete(server, request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        server.check_auth(request)
        return await complete(server, request, "completion")

    add_playground(app)
    if guard is not None:
        app.add_middleware(Guard, config=guard)  # inside the metrics: its refusals are counted too
    app.add_middleware(_MetricsMiddleware, metrics=server.metrics)
    return app

