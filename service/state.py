"""What the service loads once and every route shares: :class:`State`, kept on ``app.state.mimicry``.

``create_app`` makes the state (empty) and the lifespan fills it; a route reaches it through the request
(:func:`state_of`, under the dependencies of :mod:`mimicry.service.deps`), never through a closure
or a module global, so that several apps in one process (the tests make one per test) never share one.
This module imports no route module, and none of them imports the app: the app imports the routers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from mimicry.detector.attribution import Attribution
    from mimicry.detector.detector import Detector
    from mimicry.detector.registry import Registry
    from mimicry.detector.style import StyleEncoder

    from .batching import MicroBatcher
    from .keys import KeyStore
    from .metrics import Metrics
    from .settings import Settings
    from .work import Lanes


class State:
    """What the lifespan loads and the routes share."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings = settings
        self.metrics = metrics
        self.detector: Detector | None = None
        self.batcher: MicroBatcher | None = None
        self.lanes: Lanes | None = None
        self.keys: KeyStore | None = None
        self.explaining = 0  # explain requests in progress (each is grid**2 + 1 forward passes)
        self.decoding = 0  # uploads being decoded: images on their way to the batcher
        self.style: StyleEncoder | None = None
        self.style_batcher: MicroBatcher | None = None
        self.registry: Registry | None = None
        self.attribution: Attribution | None = None  # the detector's: state.style and state.registry

    @property
    def ready(self) -> bool:
        return self.detector is not None and self.batcher is not None and self.batcher.running


def state_of(request: Request) -> State:
    """The state of the app serving ``request`` (``scope["app"]`` is the FastAPI app itself, also under
    :func:`mimicry.service.server.service_app`'s wrapper). Routes take it as a dependency
    (:data:`mimicry.service.deps.StateDep`); this plain function is for code that runs in a thread."""
    return request.app.state.mimicry
