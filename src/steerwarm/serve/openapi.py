"""The server's OpenAPI document (`GET /openapi.json`), made from the same pydantic models that parse requests and
shape responses, so it cannot drift from what the server accepts and answers.

Invariants:
- Request bodies are the protocol's request models' validation schemas (strict: unknown fields are refused, every
  accepted OpenAI field with its type and range, the steerwarm extensions `warmth` and `steering`).
- Responses are the protocol's response models' serialization schemas; a streamed completion is
  `text/event-stream`. Every error status an operation can answer is listed with the OpenAI error object schema
  (`ErrorResponse`), which is the only shape a 4xx or 5xx body has.
- Routes with a key when the server has one declare bearer security; `/health`, `/openapi.json` and the playground
  need none.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from steerwarm.serve.protocol import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
)

REF = "#/components/schemas/{model}"
# error statuses every keyed operation can answer (401 without or with a wrong key; 403 a Host the guard refuses)
AUTH_ERRORS = (401, 403)
# and those of the generation endpoints: bad input, unknown model, body too large, not JSON, queue full or a key over
# its limit, a failed generation, a server draining
GENERATION_ERRORS = (400, 404, 413, 415, 429, 500, 503)
ERROR_TEXT = {400: "Invalid request", 401: "Missing or wrong API key", 403: "Host not allowed",
              404: "No such model or route", 413: "Body too large", 415: "Body not sent as application/json",
              429: "Queue full or key over its limit", 500: "Generation failed", 503: "Server draining"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"], "additionalProperties": False,
        "properties": {"message": {"type": "string", "minLength": 1}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=name)}}}


def _errors(statuses: tuple[int, ...]) -> dict[str, Any]:
    return {str(s): {"description": ERROR_TEXT[s], "content": _json("ErrorResponse")} for s in statuses}


def _generation(request: type[BaseModel], response: type[BaseModel], summary: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "security": [{"bearer": []}, {}],
        "requestBody": {"required": True, "content": _json(request.__name__)},
        "responses": {"200": {"description": "The completion; with `stream: true`, server-sent events ending "
                                             "`data: [DONE]` (an error after the stream began is a final event "
                                             "carrying the error object).",
                              "content": {**_json(response.__name__),
                                          "text/event-stream": {"schema": {"type": "string"}}}},
                      **_errors((*AUTH_ERRORS, *GENERATION_ERRORS))}}}


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (see the module doc)."""
    models: list[tuple[type[BaseModel], Any]] = [
        (ChatCompletionRequest, "validation"), (CompletionRequest, "validation"),
        (ChatCompletion, "serialization"), (Completion, "serialization"), (ModelList, "serialization"),
        (ModelCard, "serialization")]
    _, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = {**top.get("$defs", {}), "ErrorResponse": ERROR_SCHEMA}
    keyed: dict[str, Any] = {"security": [{"bearer": []}, {}]}
    paths: dict[str, Any] = {
        "/v1/chat/completions": _generation(ChatCompletionRequest, ChatCompletion, "Chat completion, optionally "
                                            "steered (warmth, steering)"),
        "/v1/completions": _generation(CompletionRequest, Completion, "Text completion or scoring, optionally "
                                       "steered (warmth, steering)"),
        "/v1/models": {"get": {"summary": "The served model and its dial", **keyed, "responses": {
            "200": {"description": "The model list", "content": _json("ModelList")}, **_errors(AUTH_ERRORS)}}},
        "/v1/models/{model}": {"get": {
            "summary": "The served model (a warmth suffix such as MODEL@warmth=0.5 is accepted)", **keyed,
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The model", "content": _json("ModelCard")},
                          **_errors((*AUTH_ERRORS, 400, 404))}}},
        "/health": {"get": {"summary": "Liveness, queue depth, running rows (no key)", "responses": {
            "200": {"description": "Serving", "content": {"application/json": {"schema": {"type": "object"}}}},
            "503": {"description": "Draining", "content": {"application/json": {"schema": {"type": "object"}}}},
            **_errors((403,))}}},
        "/metrics": {"get": {"summary": "Prometheus text metrics", **keyed, "responses": {
            "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(AUTH_ERRORS)}}},
    }
    return {"openapi": "3.1.0",
            "info": {"title": "steerwarm", "version": version,
                     "description": "OpenAI-compatible API with a per-request warmth dial."},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
