"""The FastAPI application: ``create_app(settings)`` builds it; the model loads in the lifespan.

Routes (versioned under /v1, documented at /docs and /openapi.json):

- ``POST /v1/detect``: one image (multipart file field, or the raw body as ``image/*``) -> a verdict.
  A file that cannot be decoded is an error answer: 413 (too many bytes or pixels), 415 (format
  outside the allow-list), 422 (corrupt or empty), each with a stable ``error.code``.
- ``POST /v1/detect/batch``: up to ``max_batch_items`` files -> one verdict per file, with per-item
  errors as data (the request itself succeeds).
- ``POST /v1/explain``: one image -> its verdict and a heatmap of where the evidence lies (JSON with
  the overlay as a PNG data URL, or ``?format=png`` for the PNG itself); an animation's first frame.

An animated GIF, WebP or PNG is scored on several frames, each sent through the batcher as a row of its
own, and combined by the library's rule (``Detector.verdict``: the mean of the frames' logits), so the API
gives the score ``Detector.predict`` gives; ``evidence.frames`` says which frames.
- ``GET /v1/models``, ``GET /healthz`` (alive), ``GET /readyz`` (model loaded), ``GET /metrics``.
- ``GET /``: the web page for artists.
- ``GET /docs`` (Swagger UI) and ``GET /redoc``: the API documentation, served with its scripts from
  the package (fastapi-offline ships them), so it works without internet. The OpenAPI document
  declares the API key (``X-API-Key`` header, or ``Authorization: Bearer``) as security schemes,
  so the docs page has an Authorize button.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from mimicry.detector.attribution import Attribution, Prepared
from mimicry.detector.bundle import ModelError
from mimicry.detector.decode import DecodeError
from mimicry.detector.detector import Detector
from mimicry.detector.explain import ExplainPlan
from mimicry.detector.registry import Registry
from mimicry.detector.style import StyleEncoder
from mimicry.detector.verdict import Verdict

from . import artists, auth, errors
from .batching import MicroBatcher, Overloaded
from .errors import APIError
from .keys import KeyStore
from .metrics import Metrics
from .schemas import BatchOut, ErrorBody, ExplainOut, Health, ModelOut, ModelsOut, VerdictOut
from .settings import Settings
from .uploads import Upload, read_images
from .work import Lanes, LaneFull, decode_costs, gather_all, offload, trim_memory

STATIC = Path(__file__).parent / "static"
IDLE_TRIM_S = 2.0  # how often the service looks for a moment to give freed memory back
DOCS_STATIC = "/docs-static"  # Swagger UI and ReDoc scripts, from the fastapi-offline package

_IMAGE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_BATCH_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}, "required": ["files"]}}},
}


def _errors(*statuses: int) -> dict:
    return {s: {"model": ErrorBody} for s in statuses}


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
    state = State(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
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
    app.state.mimicry = state
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # ------------------------------------------------------------------ dependencies

    def detector() -> Detector:
        if not state.ready:
            raise APIError("not_ready", "the model is not loaded yet", headers={"Retry-After": "1"})
        return state.detector

    # The detect routes ask for a key (and say so in the OpenAPI document) only when configured to.
    # Either way the caller is recorded: what verdicts say about the registry depends on it.
    detect_auth = [Depends(auth.detect_caller(state))]

    # ------------------------------------------------------------------ the work

    def overloaded(exc: Exception) -> APIError:
        metrics.overloaded.inc()
        return APIError("overloaded", f"the service is at capacity ({exc}); retry shortly",
                        headers={"Retry-After": str(settings.retry_after_s)})

    async def costs_of(det: Detector, uploads: list[Upload]) -> list[int]:
        return await decode_costs(state.lanes.small, [u.data for u in uploads], draft_size=det.config.size,
                                  budget=settings.max_request_pixels)

    def decode_upload(det: Detector, data: bytes, attribute: bool):
        """One decode for both models (``Detector.load``): the detector's input, the provenance signals
        and, when the caller may see attribution and anyone is enrolled, what attribution needs (the
        registry is asked here, off the event loop)."""
        return det.load(data, attribute=attribute)

    async def verdict_for(det: Detector, upload: Upload, name: str, cost: int) -> Verdict:
        state.decoding += 1
        try:
            # Who the caller is lives in a context variable the lane's threads do not see: ask here.
            attribute = state.attribution is not None and artists.caller_view(settings) is not None
            loaded = await state.lanes.run(cost, decode_upload, det, upload.data, attribute)
        except DecodeError as exc:
            metrics.images.labels(exc.code).inc()
            return det.error_verdict(name, exc.code, exc.message)
        except LaneFull as exc:
            raise overloaded(exc) from None
        finally:
            state.decoding -= 1
        if settings.keep_uploads_dir is not None:  # only what decoded: random bytes are not kept
            await offload(state.lanes.small, _keep, settings.keep_uploads_dir, upload.data)
        try:
            # One row per frame of an animation, through the same batcher; Detector.verdict combines their
            # logits by the library's one rule (mimicry.detector.detector.frame_logit).
            logits = [float(v) for v in await gather_all(state.batcher.submit(row) for row in loaded.inputs)]
        except Overloaded as exc:
            raise overloaded(exc) from None
        verdict = det.verdict(name, logits, loaded.provenance, animation=loaded.animation)
        if loaded.style is not None:
            verdict.evidence.update(await artists.visible_matches(state, style_matches, loaded.style))  # by caller
        metrics.images.labels(verdict.label).inc()
        return verdict

    async def style_matches(prepared: Prepared) -> dict:
        try:
            embedding = await state.style_batcher.submit(prepared.x)
        except Overloaded as exc:
            raise overloaded(exc) from None
        [found] = await offload(state.lanes.small, state.attribution.evidence, embedding[None], [prepared.signature])
        return found.to_dict()

    async def explain_upload(request: Request, det: Detector, method: str, grid: int):
        """The heatmap's forward passes go through the same bounded batcher as detections, a chunk at a
        time, so that a detection waits for one chunk at most and no request runs a batch of its own."""
        uploads = await read_images(request, settings.max_body_bytes, 1)
        if len(uploads) != 1:
            raise APIError("too_many_items", f"/v1/explain takes one image, got {len(uploads)}")
        upload = uploads[0]
        [cost] = await costs_of(det, uploads)
        window = max(0.25, round(2.0 / grid, 4))  # windows overlap and cover the image
        try:
            plan = await state.lanes.run(cost, lambda: ExplainPlan(det, upload.data, method=method, grid=grid,
                                                                   window=window, max_side=768,
                                                                   name=upload.filename or "upload"))
        except LaneFull as exc:
            raise overloaded(exc) from None
        logits: list[float] = []
        step = settings.explain_chunk
        for start in range(0, plan.size, step):
            rows = await offload(state.lanes.small, plan.inputs, start, min(start + step, plan.size))
            try:
                logits += [float(v) for v in await gather_all(state.batcher.submit(r) for r in rows)]
            except Overloaded as exc:
                raise overloaded(exc) from None
        return await offload(state.lanes.small, plan.finish, np.asarray(logits, np.float32))

    async def within_deadline(coro):
        try:
            return await asyncio.wait_for(coro, settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise APIError("timeout", f"the request took longer than {settings.request_timeout_s:g} s") from None

    # ------------------------------------------------------------------ routes

    @app.post("/v1/detect", response_model=VerdictOut, tags=["detect"],
              summary="Is one image an AI imitation of an artist's style?",
              openapi_extra={"requestBody": _IMAGE_BODY},
              responses=_errors(400, 401, 413, 415, 422, 503, 504), dependencies=detect_auth)
    async def detect(request: Request, det: Detector = Depends(detector)):
        async def work():
            uploads = await read_images(request, settings.max_body_bytes, 1)
            if len(uploads) != 1:
                raise APIError("too_many_items", f"/v1/detect takes one image, got {len(uploads)}; "
                                                 "use /v1/detect/batch for several")
            upload = uploads[0]
            [cost] = await costs_of(det, uploads)
            return await verdict_for(det, upload, upload.filename or "upload", cost)

        verdict = await within_deadline(work())
        if verdict.error_code is not None:
            return errors.error_response(verdict.error_code, verdict.error, errors.DECODE_STATUS[verdict.error_code])
        return verdict.to_dict()

    @app.post("/v1/detect/batch", response_model=BatchOut, tags=["detect"],
              summary="Verdicts for several images, with per-item errors",
              openapi_extra={"requestBody": _BATCH_BODY},
              responses=_errors(400, 401, 413, 415, 503, 504), dependencies=detect_auth)
    async def detect_batch(request: Request, det: Detector = Depends(detector)):
        async def work():
            uploads = await read_images(request, settings.max_body_bytes, settings.max_batch_items)
            if len(uploads) > settings.max_batch_items:
                raise APIError("too_many_items", f"{len(uploads)} images; the limit is {settings.max_batch_items}")
            names = [u.filename or f"<file #{i}>" for i, u in enumerate(uploads)]
            costs = await costs_of(det, uploads)
            return await gather_all(verdict_for(det, u, n, c) for u, n, c in zip(uploads, names, costs))

        verdicts = await within_deadline(work())
        return {"results": [v.to_dict() for v in verdicts]}

    @app.post("/v1/explain", response_model=ExplainOut, tags=["detect"],
              summary="The verdict and a heatmap of where the model's evidence lies",
              description="An animated GIF, WebP or PNG is explained, and its verdict here scored, on its first "
                          "frame only; /v1/detect scores several frames of it.",
              openapi_extra={"requestBody": _IMAGE_BODY},
              responses={**_errors(400, 401, 413, 415, 422, 503, 504),
                         200: {"content": {"image/png": {}}, "description": "JSON, or the overlay PNG with ?format=png"}},
              dependencies=detect_auth)
    async def explain_route(request: Request, det: Detector = Depends(detector),
                            method: str = Query("window", pattern="^(window|occlusion)$",
                                                description="window: each window scored on its own; occlusion: "
                                                            "each window covered and the whole image scored"),
                            grid: int = Query(8, ge=2, le=32, description="Windows per side (at most the "
                                                                           "server's max_explain_grid, 16 by default)."),
                            format: str = Query("json", pattern="^(json|png)$")):
        if grid > settings.max_explain_grid:
            raise APIError("bad_request", f"grid {grid} is over this server's limit of {settings.max_explain_grid}")
        if state.explaining >= settings.max_concurrent_explain:
            metrics.overloaded.inc()
            raise APIError("overloaded", f"{state.explaining} heatmaps are being computed; retry shortly",
                           headers={"Retry-After": str(settings.retry_after_s)})
        state.explaining += 1  # held until every part of the work has ended (service/work.py: offload)
        try:
            ex = await within_deadline(explain_upload(request, det, method, grid))
        except DecodeError as exc:
            metrics.images.labels(exc.code).inc()
            return errors.error_response(exc.code, exc.message, errors.DECODE_STATUS[exc.code])
        finally:
            state.explaining -= 1
        metrics.images.labels(ex.verdict.label).inc()
        if format == "png":
            return Response(ex.overlay_png, media_type="image/png",
                            headers={"X-Mimicry-Label": ex.verdict.label, "X-Mimicry-Score": f"{ex.verdict.score:.6f}"})
        body = ex.to_dict()
        body["overlay_png"] = "data:image/png;base64," + base64.b64encode(ex.overlay_png).decode()
        return body

    @app.get("/v1/models", response_model=ModelsOut, tags=["models"], summary="The loaded model and its card")
    async def models(det: Detector = Depends(detector)):
        card = det.bundle.card
        return {"models": [ModelOut(
            name=det.name, version=det.version, backbone=card["backbone"], input_size=det.config.size,
            thresholds=card["thresholds"], calibration=card["calibration"],
            metrics_test=card["metrics"].get("test"), trained_on=det.bundle.trained_on,
            onnx_sha256=card["onnx_sha256"])]}

    app.include_router(artists.router(state))

    @app.get("/healthz", response_model=Health, tags=["ops"], summary="The process is alive")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, tags=["ops"], summary="The model is loaded and serving",
             responses=_errors(503))
    async def readyz():
        if not state.ready:
            return errors.error_response("not_ready", "the model is not loaded yet", headers={"Retry-After": "1"})
        return {"status": "ready", "model": state.detector.name, "model_version": state.detector.version}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _keep(directory: Path, data: bytes) -> None:
    """Store a decoded upload by content hash (only when the operator set ``keep_uploads_dir``): owner-only
    files (0600) in an owner-only folder, written under a unique temporary name and renamed, so identical
    uploads at once both succeed and a reader never sees half a file."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / hashlib.sha256(data).hexdigest()
    if path.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mimicry-detect")
    except PackageNotFoundError:
        return "0+unknown"
