"""Who is calling: API keys as FastAPI dependencies, with scopes (:mod:`mimicry.service.keys`).

A key comes as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``; both are declared in the
OpenAPI document on the routes that need a key, so ``/docs`` has an Authorize button. Keys are checked
against the key store of the app serving the request (:func:`mimicry.service.state.state_of`), so
these dependencies are module-level functions, shared by every app; routes take them through the
aliases of :mod:`mimicry.service.deps`.

- :func:`require_scope` ``(scope)``: the route needs a valid key whose scope includes
  ``scope`` (401 ``unauthorized`` without a valid key, 403 ``forbidden`` with one of a lower scope).
  The registry routes need ``enrol`` (``admin`` to remove an artist); with
  ``require_key_for_detect`` the detect routes need ``detect``, which every key includes.
- :func:`detect_caller` ``(settings)``: the detect routes' dependency. It asks for a key only when the
  service is configured to (``require_key_for_detect``), and then declares it in the OpenAPI
  document; otherwise a key is optional and undeclared, but one that is sent is checked (a wrong
  or revoked key is 401, never silently anonymous). Either way it records the caller's key, or
  None for an anonymous caller, for :func:`current_caller`, which decides what verdicts say about
  the registry (:func:`mimicry.service.artists.visible_matches`). Which of the two it is, is chosen
  when the app is built: the OpenAPI document is.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from .errors import APIError
from .keys import SCOPES, KeyInfo, check_scope
from .state import State, state_of

if TYPE_CHECKING:
    from .settings import Settings

API_KEY_HEADER = "X-API-Key"
# The two ways to present a key, declared in the OpenAPI document (either one will do).
KEY_SCHEME = APIKeyHeader(name=API_KEY_HEADER, scheme_name="APIKeyHeader", auto_error=False,
                          description="An API key made by `mimicry keys create` (`--scope detect|enrol|admin`).")
BEARER_SCHEME = HTTPBearer(scheme_name="BearerKey", auto_error=False,
                           description="The same API key, as `Authorization: Bearer <key>`.")

# The key of the request being served (None: anonymous). Set by the detect routes' dependency in
# the request's own task, so the coroutines that task awaits, and the tasks it starts, see it.
_CALLER: contextvars.ContextVar[KeyInfo | None] = contextvars.ContextVar("mimicry_caller", default=None)


def current_caller() -> KeyInfo | None:
    """The key that the detect request being served came with, or None for an anonymous caller."""
    return _CALLER.get()


def _unauthorized(message: str) -> APIError:
    return APIError("unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def _verify(state: State, key: str) -> KeyInfo:
    info = state.keys.verify(key) if state.keys is not None else None
    if info is None:
        raise _unauthorized("the API key is not valid or has been revoked")
    return info


def _needs(info: KeyInfo, scope: str) -> KeyInfo:
    if not info.allows(scope):
        above = SCOPES[SCOPES.index(scope):]
        raise APIError("forbidden", f"this key's scope is {info.scope!r}; this request needs a key of scope "
                                    f"{' or '.join(repr(s) for s in above)} (mimicry keys create NAME --scope {scope})")
    return info


def require_scope(scope: str):
    """A dependency: a valid key (header or bearer, both declared in OpenAPI) of ``scope`` or above;
    returns its :class:`~mimicry.service.keys.KeyInfo`. A plain function: FastAPI runs it in a worker
    thread, off the event loop, for the key store's database."""
    check_scope(scope)

    def require_key(request: Request, key: str | None = Security(KEY_SCHEME),
                    bearer: HTTPAuthorizationCredentials | None = Security(BEARER_SCHEME)) -> KeyInfo:
        if key is None and bearer is not None:
            key = bearer.credentials
        if key is None:
            raise _unauthorized(f"this endpoint needs an API key in the {API_KEY_HEADER} header")
        return _needs(_verify(state_of(request), key), scope)

    return require_key


_require_detect = require_scope("detect")


async def _required_caller(info: KeyInfo = Security(_require_detect)) -> KeyInfo | None:
    _CALLER.set(info)
    return info


async def _optional_caller(request: Request) -> KeyInfo | None:  # the key is read by hand: not declared
    key = request.headers.get(API_KEY_HEADER)
    if key is None:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        key = credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
    info = None if key is None else await run_in_threadpool(_verify, state_of(request), key)
    _CALLER.set(info)
    return info


def detect_caller(settings: Settings):
    """The detect routes' dependency (see the module's docstring): a key of any scope when
    ``require_key_for_detect``, else an optional one; records the caller for :func:`current_caller`."""
    return _required_caller if settings.require_key_for_detect else _optional_caller
