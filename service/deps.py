"""The FastAPI dependencies the routes share, declared once, as ``typing.Annotated`` aliases.

A route says what it needs in its signature (``det: DetectorDep``, ``reg: RegistryDep``, ``key: EnrolKey``)
and FastAPI finds it for each request from the app that serves it (``request.app.state.mimicry``:
:func:`mimicry.service.state.state_of`). So the routers are module-level objects, the same for every app,
and a route's checks (the model is loaded, the registry exists, the key's scope) live here, once:

- :data:`StateDep`, :data:`SettingsDep`: the app's :class:`~mimicry.service.state.State` and settings.
- :data:`DetectorDep`: the loaded detector, or 503 ``not_ready`` (with ``Retry-After``) while it loads.
- :data:`RegistryDep`: the artist registry, or 503 ``attribution_off`` on a service without a style encoder.
- :data:`EnrolKey`, :data:`AdminKey`: a valid key of that scope (:func:`mimicry.service.auth.require_scope`).
- :func:`detect_caller`: the detect routes' caller, which ``create_app`` adds to their router: whether it
  asks for a key, and declares one in the OpenAPI document, depends on the settings the app is built with.

The dependencies that only read the state are ``async def``: FastAPI would run a plain ``def`` in a worker
thread, a hop per dependency per request, for nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, params

from mimicry.detector.detector import Detector
from mimicry.detector.registry import Registry

from . import auth
from .errors import APIError
from .keys import KeyInfo
from .settings import Settings
from .state import State, state_of


async def get_state(request: Request) -> State:
    return state_of(request)


StateDep = Annotated[State, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_detector(state: StateDep) -> Detector:
    if not state.ready:
        raise APIError("not_ready", "the model is not loaded yet", headers={"Retry-After": "1"})
    return state.detector


DetectorDep = Annotated[Detector, Depends(get_detector)]


async def get_registry(state: StateDep) -> Registry:
    if state.registry is None or state.style is None:
        raise APIError("attribution_off", "this service runs without a style encoder, so there is no registry")
    return state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]

EnrolKey = Annotated[KeyInfo, Depends(auth.require_scope("enrol"))]
AdminKey = Annotated[KeyInfo, Depends(auth.require_scope("admin"))]


def detect_caller(settings: Settings) -> params.Depends:
    """The detect routes' dependency on who calls (:func:`mimicry.service.auth.detect_caller`), for
    ``include_router(..., dependencies=[...])``: the OpenAPI document declares a key on those routes only
    when ``require_key_for_detect``, and the document is fixed when the app is built, so the choice is
    made then, not per request. Either way the caller is recorded: what verdicts say about the registry
    depends on it."""
    return Depends(auth.detect_caller(settings))
