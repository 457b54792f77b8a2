"""The guard in front of every route: what a web page in someone's browser must not be able to make the server do.

A page on any site can make its visitor's browser send requests to a server on that visitor's machine or network.
Three rules stop it:

Invariants:
- Host (against DNS rebinding): a request whose `Host` header names a host that is not allowed gets 403 with an
  OpenAI error object (code `host_not_allowed`) before any route runs. Allowed: the names in `allowed_hosts`, plus
  the bound address itself, plus, when the server is bound to a loopback address, the loopback names (`localhost`,
  `127.0.0.1`, `::1`). A server bound to every interface (`0.0.0.0`, `::`) cannot know its public names: it accepts
  any Host unless `allowed_hosts` is given. Ports are not compared (a proxy may rewrite them). A request without a
  Host header (HTTP/1.0) is refused when a rule applies.
- Content type: a request with a body method (POST, PUT, PATCH) must send `Content-Type: application/json`
  (parameters such as `charset=utf-8` allowed), else 415 (code `unsupported_media_type`). A browser sends such a
  body cross-site only after a CORS preflight, so a page cannot post with a "simple" `text/plain` request.
- CORS is off by default: no response carries `Access-Control-*` headers, and a preflight (`OPTIONS` with `Origin`
  and `Access-Control-Request-Method`) gets 403 (code `cors_origin_not_allowed`). With `cors_origins` (exact
  origins such as `https://app.example.com`, or `*`), a preflight from a listed origin gets 204 with the allowed
  methods and headers (Authorization, Content-Type), and every response to a request from a listed origin carries
  `Access-Control-Allow-Origin` for that origin (`Vary: Origin`). The server's own pages (the playground) are
  same-origin and need none of it.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from steerwarm.serve.errors import APIError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a Host header, lower-cased, without port or IPv6 brackets."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h[1:]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


@dataclass(frozen=True)
class GuardConfig:
    """`bind`: the address the server listens on; `allowed_hosts`: more Host names to accept; `cors_origins`:
    origins allowed to call the API from a browser (`*` for any)."""

    bind: str = "127.0.0.1"
    allowed_hosts: Sequence[str] = ()
    cors_origins: Sequence[str] = field(default_factory=tuple)

    def hosts(self) -> frozenset[str] | None:
        """The allowed Host names, or None when any Host is accepted (see the module doc)."""
        extra = {host_name(h) for h in self.allowed_hosts if h.strip()}
        bind = self.bind.strip().strip("[]").lower()
        if bind in WILDCARD_BINDS:
            return frozenset(extra | LOOPBACK_NAMES) if extra else None
        names = extra | {bind}
        if is_loopback(bind):
            names |= LOOPBACK_NAMES
        return frozenset(names)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return bytes(v).decode("latin-1")
    return None


async def _reply(send: Send, status: int, body: dict[str, Any] | None, headers: Iterable[tuple[bytes, bytes]] = ()
                 ) -> None:
    data = b"" if body is None else json.dumps(body).encode()
    hdrs = [*headers]
    if body is not None:
        hdrs += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """ASGI middleware applying the module doc's rules before the app sees a request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], config: GuardConfig) -> None:
        self.app = app
        self.config = config
        self.hosts = config.hosts()
        self.any_origin = "*" in config.cors_origins
        self.origins = frozenset(o.rstrip("/").lower() for o in config.cors_origins if o != "*")

    def origin_allowed(self, origin: str | None) -> bool:
        return origin is not None and (self.any_origin or origin.rstrip("/").lower() in self.origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.hosts is not None:
            host = _header(scope, b"host")
            if host is None or host_name(host) not in self.hosts:
                err = APIError(403, f"the Host header {host!r} is not one this server answers to (it is bound to "
                               f"{self.config.bind}); add the name with --allowed-host if it is yours",
                               code="host_not_allowed", type_="permission_error")
                await _reply(send, err.status, err.body())
                return
        method = scope.get("method", "GET").upper()
        origin = _header(scope, b"origin")
        if method == "OPTIONS" and origin is not None and _header(scope, b"access-control-request-method"):
            if not self.origin_allowed(origin):
                err = APIError(403, f"cross-origin requests from {origin!r} are not allowed (CORS is off unless "
                               "--cors-origin lists the origin)", code="cors_origin_not_allowed",
                               type_="permission_error")
                await _reply(send, err.status, err.body())
                return
            await _reply(send, 204, None, [
                (b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
                (b"access-control-allow-methods", CORS_METHODS.encode()),
                (b"access-control-allow-headers", CORS_HEADERS.encode()), (b"access-control-max-age", b"600")])
            return
        if method in BODY_METHODS:
            ctype = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                err = APIError(415, f"the request body must be JSON sent as 'Content-Type: application/json' (got "
                               f"{ctype or 'no content type'!r})", param="Content-Type",
                               code="unsupported_media_type", type_="invalid_request_error")
                await _reply(send, err.status, err.body())
                return
        if not self.origin_allowed(origin):
            await self.app(scope, receive, send)
            return
        allow = (b"access-control-allow-origin", (origin or "").encode("latin-1"))

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), allow, (b"vary", b"Origin")]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
