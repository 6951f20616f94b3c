"""The operator's routes: ``GET /healthz`` (alive), ``GET /readyz`` (model loaded), ``GET /metrics``
(Prometheus), and ``GET /``, the web page for artists (its scripts and styles are under ``/static``,
which ``create_app`` mounts from :data:`STATIC`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import errors
from .deps import StateDep
from .schemas import Health, error_responses

STATIC = Path(__file__).parent / "static"

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["ops"], summary="The process is alive")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, tags=["ops"], summary="The model is loaded and serving",
            responses=error_responses(503))
async def readyz(state: StateDep):
    if not state.ready:
        return errors.error_response("not_ready", "the model is not loaded yet", headers={"Retry-After": "1"})
    return {"status": "ready", "model": state.detector.name, "model_version": state.detector.version}


@router.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
async def prometheus(state: StateDep):
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
async def index():
    return FileResponse(STATIC / "index.html", media_type="text/html")
