"""The detection routes: ``POST /v1/detect``, ``POST /v1/detect/batch``, ``POST /v1/explain`` (:data:`router`)
and ``GET /v1/models`` (:data:`models_router`); what they answer is described in :mod:`mimicry.service.app`.

Two routers because the detect routes have a dependency /v1/models has not: who calls
(:func:`mimicry.service.deps.detect_caller`), which ``create_app`` adds when it includes :data:`router`,
since whether it asks for a key depends on the app's settings. The handlers are module-level functions
that take what they need as dependencies (:mod:`mimicry.service.deps`); the work they share takes the
app's :class:`~mimicry.service.state.State` as an argument.

The work: an upload is decoded once for both models (:func:`decode_upload`) in a lane that its decode cost
picks (:mod:`mimicry.service.work`), its rows go through the app's micro-batcher, and an animation's frames
are combined by the library's rule; a heatmap's forward passes go through the same batcher, a chunk at a
time. A full lane or batcher is 503 ``overloaded`` (:func:`overloaded`), a request past its deadline 504.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mimicry.detector.attribution import Prepared
from mimicry.detector.decode import DecodeError
from mimicry.detector.detector import Detector
from mimicry.detector.explain import ExplainPlan, default_window
from mimicry.detector.verdict import Verdict

from . import artists, errors
from .batching import Overloaded
from .deps import DetectorDep, SettingsDep, StateDep
from .errors import APIError
from .schemas import BatchOut, ExplainOut, ModelOut, ModelsOut, VerdictOut, error_responses
from .settings import Settings
from .state import State
from .uploads import Upload, read_images
from .work import LaneFull, decode_costs, gather_all, offload

router = APIRouter()  # /v1/detect, /v1/detect/batch, /v1/explain: included with the caller dependency
models_router = APIRouter()  # /v1/models

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

# ------------------------------------------------------------------ the work


def overloaded(state: State, exc: Exception) -> APIError:
    state.metrics.overloaded.inc()
    return APIError("overloaded", f"the service is at capacity ({exc}); retry shortly",
                    headers={"Retry-After": str(state.settings.retry_after_s)})


async def costs_of(state: State, det: Detector, uploads: list[Upload]) -> list[int]:
    return await decode_costs(state.lanes.small, [u.data for u in uploads], draft_size=det.config.size,
                              budget=state.settings.max_request_pixels, max_pixels=state.settings.max_pixels)


def decode_upload(det: Detector, data: bytes, attribute: bool):
    """One decode for both models (``Detector.load``): the detector's input, the provenance signals
    and, when the caller may see attribution and anyone is enrolled, what attribution needs (the
    registry is asked here, off the event loop)."""
    return det.load(data, attribute=attribute)


async def verdict_for(state: State, det: Detector, upload: Upload, name: str, cost: int) -> Verdict:
    settings, metrics = state.settings, state.metrics
    state.decoding += 1
    try:
        # Who the caller is lives in a context variable the lane's threads do not see: ask here.
        attribute = state.attribution is not None and artists.caller_view(settings) is not None
        loaded = await state.lanes.run(cost, decode_upload, det, upload.data, attribute)
    except DecodeError as exc:
        metrics.images.labels(exc.code).inc()
        return det.error_verdict(name, exc.code, exc.message)
    except LaneFull as exc:
        raise overloaded(state, exc) from None
    finally:
        state.decoding -= 1
    if settings.keep_uploads_dir is not None:  # only what decoded: random bytes are not kept
        await offload(state.lanes.small, _keep, settings.keep_uploads_dir, upload.data)
    try:
        # One row per frame of an animation, through the same batcher; Detector.verdict combines their
        # logits by the library's one rule (mimicry.detector.detector.frame_logit).
        logits = [float(v) for v in await gather_all(state.batcher.submit(row) for row in loaded.inputs)]
    except Overloaded as exc:
        raise overloaded(state, exc) from None
    verdict = det.verdict(name, logits, loaded.provenance, animation=loaded.animation)
    if loaded.style is not None:  # by caller
        verdict.evidence.update(await artists.visible_matches(state, functools.partial(style_matches, state),
                                                              loaded.style))
    metrics.images.labels(verdict.label).inc()
    return verdict


async def style_matches(state: State, prepared: Prepared) -> dict:
    try:
        embedding = await state.style_batcher.submit(prepared.x)
    except Overloaded as exc:
        raise overloaded(state, exc) from None
    [found] = await offload(state.lanes.small, state.attribution.evidence, embedding[None], [prepared.signature])
    return found.to_dict()


async def explain_upload(state: State, request: Request, det: Detector, method: str, grid: int):
    """The heatmap's forward passes go through the same bounded batcher as detections, a chunk at a
    time, so that a detection waits for one chunk at most and no request runs a batch of its own."""
    settings = state.settings
    uploads = await read_images(request, settings.max_body_bytes, 1)
    if len(uploads) != 1:
        raise APIError("too_many_items", f"/v1/explain takes one image, got {len(uploads)}")
    upload = uploads[0]
    [cost] = await costs_of(state, det, uploads)
    window = default_window(grid)  # windows overlap and cover the image
    try:
        plan = await state.lanes.run(cost, lambda: ExplainPlan(det, upload.data, method=method, grid=grid,
                                                               window=window, max_side=768,
                                                               name=upload.filename or "upload"))
    except LaneFull as exc:
        raise overloaded(state, exc) from None
    logits: list[float] = []
    step = settings.explain_chunk
    for start in range(0, plan.size, step):
        rows = await offload(state.lanes.small, plan.inputs, start, min(start + step, plan.size))
        try:
            logits += [float(v) for v in await gather_all(state.batcher.submit(r) for r in rows)]
        except Overloaded as exc:
            raise overloaded(state, exc) from None
    return await offload(state.lanes.small, plan.finish, np.asarray(logits, np.float32))


async def within_deadline(settings: Settings, coro):
    try:
        return await asyncio.wait_for(coro, settings.request_timeout_s)
    except asyncio.TimeoutError:
        raise APIError("timeout", f"the request took longer than {settings.request_timeout_s:g} s") from None


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


# ------------------------------------------------------------------ routes


@router.post("/v1/detect", response_model=VerdictOut, tags=["detect"],
             summary="Is one image an AI imitation of an artist's style?",
             openapi_extra={"requestBody": _IMAGE_BODY},
             responses=error_responses(400, 401, 413, 415, 422, 503, 504))
async def detect(request: Request, det: DetectorDep, state: StateDep, settings: SettingsDep):
    async def work():
        uploads = await read_images(request, settings.max_body_bytes, 1)
        if len(uploads) != 1:
            raise APIError("too_many_items", f"/v1/detect takes one image, got {len(uploads)}; "
                                             "use /v1/detect/batch for several")
        upload = uploads[0]
        [cost] = await costs_of(state, det, uploads)
        return await verdict_for(state, det, upload, upload.filename or "upload", cost)

    verdict = await within_deadline(settings, work())
    if verdict.error_code is not None:
        return errors.error_response(verdict.error_code, verdict.error, errors.DECODE_STATUS[verdict.error_code])
    return verdict.to_dict()


@router.post("/v1/detect/batch", response_model=BatchOut, tags=["detect"],
             summary="Verdicts for several images, with per-item errors",
             openapi_extra={"requestBody": _BATCH_BODY},
             responses=error_responses(400, 401, 413, 415, 503, 504))
async def detect_batch(request: Request, det: DetectorDep, state: StateDep, settings: SettingsDep):
    async def work():
        uploads = await read_images(request, settings.max_body_bytes, settings.max_batch_items)
        if len(uploads) > settings.max_batch_items:
            raise APIError("too_many_items", f"{len(uploads)} images; the limit is {settings.max_batch_items}")
        names = [u.filename or f"<file #{i}>" for i, u in enumerate(uploads)]
        costs = await costs_of(state, det, uploads)
        return await gather_all(verdict_for(state, det, u, n, c) for u, n, c in zip(uploads, names, costs))

    verdicts = await within_deadline(settings, work())
    return {"results": [v.to_dict() for v in verdicts]}


@router.post("/v1/explain", response_model=ExplainOut, tags=["detect"],
             summary="The verdict and a heatmap of where the model's evidence lies",
             description="An animated GIF, WebP or PNG is explained, and its verdict here scored, on its first "
                         "frame only; /v1/detect scores several frames of it.",
             openapi_extra={"requestBody": _IMAGE_BODY},
             responses={**error_responses(400, 401, 413, 415, 422, 503, 504),
                        200: {"content": {"image/png": {}},
                              "description": "JSON, or the overlay PNG with ?format=png"}})
async def explain_route(request: Request, det: DetectorDep, state: StateDep, settings: SettingsDep,
                        method: str = Query("window", pattern="^(window|occlusion)$",
                                            description="window: each window scored on its own; occlusion: "
                                                        "each window covered and the whole image scored"),
                        grid: int = Query(8, ge=2, le=32, description="Windows per side (at most the "
                                                                       "server's max_explain_grid, 16 by default)."),
                        format: str = Query("json", pattern="^(json|png)$")):
    if grid > settings.max_explain_grid:
        raise APIError("bad_request", f"grid {grid} is over this server's limit of {settings.max_explain_grid}")
    if state.explaining >= settings.max_concurrent_explain:
        state.metrics.overloaded.inc()
        raise APIError("overloaded", f"{state.explaining} heatmaps are being computed; retry shortly",
                       headers={"Retry-After": str(settings.retry_after_s)})
    state.explaining += 1  # held until every part of the work has ended (service/work.py: offload)
    try:
        ex = await within_deadline(settings, explain_upload(state, request, det, method, grid))
    except DecodeError as exc:
        state.metrics.images.labels(exc.code).inc()
        return errors.error_response(exc.code, exc.message, errors.DECODE_STATUS[exc.code])
    finally:
        state.explaining -= 1
    state.metrics.images.labels(ex.verdict.label).inc()
    if format == "png":
        return Response(ex.overlay_png, media_type="image/png",
                        headers={"X-Mimicry-Label": ex.verdict.label, "X-Mimicry-Score": f"{ex.verdict.score:.6f}"})
    body = ex.to_dict()
    body["overlay_png"] = "data:image/png;base64," + base64.b64encode(ex.overlay_png).decode()
    return body


@models_router.get("/v1/models", response_model=ModelsOut, tags=["models"], summary="The loaded model and its card")
async def models(det: DetectorDep):
    card = det.bundle.card
    return {"models": [ModelOut(
        name=det.name, version=det.version, backbone=card["backbone"], input_size=det.config.size,
        thresholds=card["thresholds"], calibration=card["calibration"],
        metrics_test=card["metrics"].get("test"), trained_on=det.bundle.trained_on,
        onnx_sha256=card["onnx_sha256"])]}
