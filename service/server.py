"""How ``mimicry serve`` runs uvicorn: connection timeouts and limits, and the file-descriptor budget.

uvicorn on its own (h11) holds a connection that has not finished its request headers for ever, and a
new connection that sends nothing too; it closes idle keep-alive connections after 5 s, sooner than
the 60 s idle timeout of most proxies and load balancers, so a proxy reusing one can meet a reset.
:class:`ServiceProtocol` adds the header timeout and a hard connection limit under the process's file
limit; :func:`uvicorn_options` passes it with the keep-alive timeout, uvicorn's ``limit_concurrency``
(503 past it) and the listen backlog; :func:`new_event_loop` keeps a failed ``accept()`` to one log
line now and then; :func:`service_app` keeps the connection of an error the app has answered.
Every value comes from :class:`mimicry.service.settings.Settings` (the "Connections" block).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
import time
from typing import Any

import h11
from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

from mimicry.service.settings import Settings

logger = logging.getLogger("uvicorn.error")

# Open files kept for everything but client connections (the model, databases, logs, pipes, epoll):
# a fresh server holds about 20.
FD_RESERVE_MIN = 64
# Turns of the event loop an accepted socket stays open before a refusal closes it (see connection_limits).
ACCEPT_TURNS = 4
# What the soft open-file limit is raised to at start (never above the hard limit).
FD_TARGET = 65536


def _raw_answer(status: int, reason: str, code: str, message: str, *headers: str) -> bytes:
    """A whole HTTP/1.1 answer in the service's error shape, written before h11 has a request."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", *headers]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


_REFUSED = _raw_answer(503, "Service Unavailable", "overloaded", "too many open connections; retry shortly",
                       "retry-after: 1")
_TIMED_OUT = _raw_answer(408, "Request Timeout", "request_timeout", "the request headers did not arrive in time")


class _Every:
    """Logs an event at most once per ``period`` seconds, with how many happened since the last line."""

    def __init__(self, message: str, period: float = 10.0):
        self.message, self.period = message, period
        self.count, self.last = 0, float("-inf")

    def __call__(self, *args: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.period:
            if self.count > 1:
                logger.warning(self.message + " (%d times since the previous such line)", *args, self.count)
            else:
                logger.warning(self.message, *args)
            self.count, self.last = 0, now


_header_timeouts = _Every("closed a connection whose request headers took over %g s")
_refusals = _Every("refused a connection: %d open, the most this process takes (MIMICRY_MAX_CONNECTIONS "
                   "and the open-file limit)")
_accept_failures = _Every("accept() failed: %s; new connections wait a second (asyncio retries)")


class ServiceProtocol(H11Protocol):
    """uvicorn's h11 protocol with a request-header timeout and a hard limit on open connections.

    - A request whose headers have started but not ended ``header_timeout_s`` after its first byte is
      answered 408 and closed (slow-header clients hold neither a slot nor a file for long).
    - A new connection that sends nothing is closed after the keep-alive timeout, like an idle one.
    - Past ``max_open`` connections in this process a new connection is answered 503 and closed at once,
      so accept() never runs out of file descriptors.
    """

    def __init__(self, *args: Any, header_timeout_s: float, max_open: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.max_open = max_open
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_open:
            _refusals(len(self.connections) - 1)
            transport.write(_REFUSED)
            transport.close()
            return
        # Idle until its first byte: the keep-alive timer, which uvicorn arms only after a response.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_headers()  # a pipelined request read from the buffer just now may be incomplete

    def _watch_headers(self) -> None:
        """Time a request whose first bytes are here and whose headers are not complete yet."""
        waiting = (self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])
                   and not self.transport.is_closing())
        if not waiting:
            self._cancel_header_timer()
        elif self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        _header_timeouts(self.header_timeout_s)
        if self.conn.our_state is h11.IDLE:
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def raise_fd_limit(target: int = FD_TARGET) -> tuple[int, int]:
    """Raise the soft open-file limit towards the hard one (processes started later inherit it);
    returns (soft, hard) as they are afterwards."""
    try:
        import resource
    except ImportError:  # not a Unix
        return 0, 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft, hard


def _soft_fd_limit() -> int:
    """The soft open-file limit, 0 where there is none (or no way to read it)."""
    try:
        import resource
    except ImportError:
        return 0
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 0 if soft == resource.RLIM_INFINITY else soft


def connection_limits(settings: Settings, soft_fd_limit: int) -> tuple[int, int, int]:
    """(open connections refused past, requests answered 503 past, listen backlog) for one process.

    asyncio's accept loop takes up to ``backlog`` connections per turn of the event loop, and a socket
    it accepts reaches the protocol two turns later and, refused there, is closed one turn after that:
    up to ACCEPT_TURNS backlogs of sockets are open beyond the connections held. The open-file limit
    must hold those, the connections and a reserve for the rest of the process; where it is low the
    backlog gives way first (to an eighth of what the reserve leaves), then the connections.
    ``max_connections`` (uvicorn's ``limit_concurrency``) above what fits is lowered to it.
    """
    limit, backlog = settings.max_connections, settings.backlog
    if soft_fd_limit <= 0:  # no limit known
        return sys.maxsize, limit, backlog
    room = max(2, soft_fd_limit - max(FD_RESERVE_MIN, soft_fd_limit // 10))
    backlog = max(1, min(backlog, room // (2 * ACCEPT_TURNS)))
    max_open = max(1, room - ACCEPT_TURNS * backlog)
    if limit > max_open or backlog < settings.backlog:
        logger.warning("with an open-file limit of %d: max_connections %d -> %d, backlog %d -> %d",
                       soft_fd_limit, limit, min(limit, max_open), settings.backlog, backlog)
    return max_open, min(limit, max_open), backlog


_BUSY = json.dumps({"error": {"code": "overloaded",
                               "message": "too many requests in flight; retry shortly"}}).encode()


async def _over_concurrency_limit(scope: Any, receive: Any, send: Any) -> None:
    """What a request past ``max_connections`` is answered: 503 in the service's error shape (uvicorn's own is
    the plain text "Service Unavailable", which a client parsing JSON, such as the web page, cannot read)."""
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(_BUSY)).encode()),
                            (b"connection", b"close"), (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": _BUSY, "more_body": False})


def uvicorn_options(settings: Settings, soft_fd_limit: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` from the Connections settings.

    Two limits per process: past ``max_connections`` a request is answered 503 by uvicorn (its
    ``limit_concurrency``, which counts connections and requests in flight); past what the open-file
    limit allows (:func:`connection_limits`) a new connection is answered 503 and closed at once.
    """
    max_open, limit, backlog = connection_limits(settings, _soft_fd_limit() if soft_fd_limit is None
                                                 else soft_fd_limit)
    protocol = functools.partial(ServiceProtocol, header_timeout_s=settings.header_timeout_s, max_open=max_open)
    # uvicorn's h11 protocol answers past limit_concurrency with the app its module names service_unavailable,
    # looked up when a request comes: this process's server (the only one configured here) answers in JSON.
    h11_impl.service_unavailable = _over_concurrency_limit
    return {"http": protocol, "loop": "mimicry.service.server:new_event_loop",
            "timeout_keep_alive": settings.keep_alive_timeout_s, "limit_concurrency": limit, "backlog": backlog}


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if context.get("message") == "socket.accept() out of system resource":
        # asyncio retries its accept loop up to `backlog` times, logging a traceback each time.
        _accept_failures(context.get("exception"))
        return
    loop.default_exception_handler(context)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop uvicorn would pick (uvloop if installed), with the accept-failure handler."""
    from uvicorn.loops.auto import auto_loop_factory

    loop = auto_loop_factory()()
    loop.set_exception_handler(_exception_handler)
    return loop


class AnsweredErrors:
    """ASGI wrapper: an exception that reaches the server after the response was sent in full is
    dropped, so uvicorn keeps the connection.

    The app's catch-all handler answers an unexpected error with JSON (500, or 503 for a lost
    database) and logs it; starlette then raises the exception again "so that servers can log it",
    and uvicorn, seeing it, closed the connection without a ``Connection: close``, so a client that
    reused it met a reset. An exception before or during the response still goes to uvicorn.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sent = False

        async def tracked(message: dict) -> None:
            nonlocal sent
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                sent = True

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if not sent:
                raise
            logger.debug("error after a complete response (the app's handler answered it)", exc_info=True)


def service_app(app: Any) -> AnsweredErrors:
    return AnsweredErrors(app)


def create_app() -> AnsweredErrors:
    """The app factory that ``mimicry serve --workers N`` gives uvicorn (settings from the environment)."""
    from mimicry.service.app import create_app as create

    return service_app(create())
