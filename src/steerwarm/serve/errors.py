"""Errors as OpenAI error objects: one exception type carries status, message, type, param and code.

Invariant: every failure a client can cause maps to exactly one `APIError` whose message says what was wrong and
what to do; the HTTP status, the JSON body `{"error": {"message", "type", "param", "code"}}` and the response headers
(`headers`: `WWW-Authenticate` on 401, `Retry-After` when the client should wait) come from it alone.
"""

from __future__ import annotations

from typing import Any

# OpenAI's error `type` values by status (what its own API answers).
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


class APIError(Exception):
    """A request failed; `status` is the HTTP status and `body()` the OpenAI error object."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type_: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_ or _TYPES.get(status, "invalid_request_error")

    @property
    def headers(self) -> dict[str, str] | None:
        out = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry_after is not None:
            out["Retry-After"] = str(self.retry_after)
        return out or None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)
