"""The FastAPI application: ``create_app(settings)`` builds it; the model loads in the lifespan.

Routes (versioned under /v1, documented at /docs and /openapi.json):

- ``POST /v1/detect``: one image (multipart file field, or the raw body as ``image/*``) -> a verdict.
  A file that cannot be decoded is an error answer: 413 (too many bytes or pixels), 415 (format
  outside the allow-list), 422 (corrupt or empty), each with a stable ``error.code``.
- ``POST /v1/detect/batch``: up to ``max_batch_items`` files -> one verdict per file, with per-item
  errors as data (the request itself succeeds).
- ``POST /v1/explain``: one image -> its verdict and a heatmap of where the evidence lies (JSON with
  the overlay as a PNG data URL, or ``?format=png`` for the PNG itself); an animation's first frame.
- ``/v1/artists``: the registry of enrolled artists (list, add, enrol works, remove), under API keys.
- ``GET /v1/models``, ``GET /healthz`` (alive), ``GET /readyz`` (model loaded), ``GET /metrics``.
- ``GET /``: the web page for artists.
- ``GET /docs`` (Swagger UI) and ``GET /redoc``: the API documentation, served with its scripts from
  the package (fastapi-offline ships them), so it works without internet. The OpenAPI document
  declares the API key (``X-API-Key`` header, or ``Authorization: Bearer``) as security schemes,
  so the docs page has an Authorize button.

An animated GIF, WebP or PNG is scored on several frames, each sent through the batcher as a row of its
own, and combined by the library's rule (``Detector.verdict``: the mean of the frames' logits), so the API
gives the score ``Detector.predict`` gives; ``evidence.frames`` says which frames.

The layout: this module builds the app (settings, the shared state, the lifespan that loads the models,
middleware, error handlers, the routers, static files) and holds no route. The routes are module-level
functions in their routers: :mod:`~mimicry.service.detect` (detect, batch, explain, models),
:mod:`~mimicry.service.artists` (the registry) and :mod:`~mimicry.service.ops` (health, readiness,
metrics, the web page). They take what they need as the dependencies of :mod:`~mimicry.service.deps`,
which find the app's :class:`~mimicry.service.state.State` through the request (``app.state.mimicry``).
This module imports the routers and no router imports it (only :mod:`~mimicry.service.server` and the
CLI do), so there is no import loop.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from mimicry.detector.attribution import Attribution
from mimicry.detector.bundle import ModelError
from mimicry.detector.detector import Detector
from mimicry.detector.registry import Registry
from mimicry.detector.style import StyleEncoder

from . import artists, deps, detect, errors, ops
from .batching import MicroBatcher
from .keys import KeyStore
from .metrics import Metrics
from .settings import Settings
from .state import State
from .work import Lanes, offload, trim_memory

IDLE_TRIM_S = 2.0  # how often the service looks for a moment to give freed memory back
DOCS_STATIC = "/docs-static"  # Swagger UI and ReDoc scripts, from the fastapi-offline package

class MetricsMiddleware:
    """Counts requests by route template, method and status, and times them (pure ASGI: cheap)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - t0)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Nothing is loaded until the lifespan starts (first request in tests,
    server start-up under uvicorn)."""
    settings = settings or Settings()
    metrics = Metrics()
    app = FastAPIOffline(
        static_url=DOCS_STATIC,
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would otherwise call an online validator
        title="mimicry-detect",
        summary="Is this image an AI imitation of a human artist's style?",
        description="Calibrated verdicts from an ONNX detector. Every error is JSON: "
                    "`{\"error\": {\"code\", \"message\"}}` with a stable code.",
        version=_package_version(),
        lifespan=lifespan,
    )
    app.state.mimicry = State(settings, metrics)  # where lifespan and routes (deps.StateDep) find it
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    # The order of the routers is the order of the paths in the OpenAPI document.
    app.include_router(detect.router, dependencies=[deps.detect_caller(settings)])
    app.include_router(detect.models_router)
    app.include_router(artists.router)
    app.include_router(ops.router)
    app.mount("/static", StaticFiles(directory=ops.STATIC), name="static")
    return app


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Load the detector (and, when configured, the style encoder and the registry), start the batchers,
    and stop and close them all at shutdown. The state is ready (``State.ready``) only once all is loaded."""
    state: State = app.state.mimicry
    settings, metrics = state.settings, state.metrics
    det = await run_in_threadpool(Detector.from_dir, settings.model_dir,
                                  intra_op_threads=settings.intra_op_threads,
                                  max_bytes=settings.max_body_bytes, max_pixels=settings.max_pixels)
    state.lanes = Lanes(workers=settings.decode_workers, large_workers=settings.large_decode_workers,
                        large_pixels=settings.large_image_pixels, large_queue_max=settings.large_queue_max)
    state.keys = KeyStore(settings.keys_db)
    batcher = MicroBatcher(det.predict_arrays, max_size=settings.batch_max_size,
                           max_wait_ms=settings.batch_max_wait_ms, max_queue=settings.queue_max,
                           on_batch=metrics.observe_batch, pending=lambda: state.decoding)
    await batcher.start()
    if settings.style_encoder_dir is not None and str(settings.style_encoder_dir):
        try:
            state.style = await run_in_threadpool(
                StyleEncoder.from_dir, settings.style_encoder_dir, intra_op_threads=settings.intra_op_threads,
                max_bytes=settings.max_body_bytes, max_pixels=settings.max_pixels)
        except ModelError as exc:
            raise ModelError(f"style encoder: {exc} (set MIMICRY_STYLE_ENCODER_DIR= to run without attribution)") from None
        state.registry = await run_in_threadpool(Registry.open, settings.registry, aggregate=state.style.aggregate)
        # The one attribution component (the detector's, as in every door); its encoder runs
        # through the style batcher below, not in the detector's own batches.
        state.attribution = det.attribution = Attribution(state.style, state.registry,
                                                           top_k=settings.artists_top_k)
        state.style_batcher = MicroBatcher(state.style.embed_arrays, max_size=settings.batch_max_size,
                                           max_wait_ms=settings.batch_max_wait_ms, max_queue=settings.queue_max,
                                           on_batch=metrics.observe_batch)
        await state.style_batcher.start()
    metrics.queue_depth.set_function(lambda: batcher.depth)

    async def trim_when_idle() -> None:
        # After work, once nothing is queued or decoding, the C heap's freed memory goes back to the
        # system (glibc keeps it in its per-thread arenas otherwise, and RSS creeps up with load).
        trimmed_at = batcher.batches
        while True:
            await asyncio.sleep(IDLE_TRIM_S)
            idle = batcher.depth == 0 and state.decoding == 0 and state.explaining == 0
            if idle and batcher.batches != trimmed_at:
                trimmed_at = batcher.batches
                await offload(state.lanes.small, trim_memory)

    trimmer = asyncio.create_task(trim_when_idle(), name="trim-when-idle")
    metrics.model.info({"name": det.name, "version": det.version, "sha256": det.bundle.card["onnx_sha256"]})
    state.detector, state.batcher = det, batcher
    try:
        yield
    finally:
        trimmer.cancel()
        state.batcher = None
        await batcher.stop()
        if state.style_batcher is not None:
            await state.style_batcher.stop()
        if state.registry is not None:
            state.registry.close()
        state.lanes.shutdown()
        state.keys.close()


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mimicry-detect")
    except PackageNotFoundError:
        return "0+unknown"
