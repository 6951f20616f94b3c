"""The artist registry over HTTP: enrol portfolios, list and remove artists, and attribution.

Every route here needs an API key (``X-API-Key``): enrolling or removing an artist changes what the
service says about other people's images, and the list of enrolled artists and their consent notes
is not public. Attribution itself comes with each detect verdict (``evidence["artists"]``) when
anyone is enrolled.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from mimicry.detector.registry import ArtistMatch, RegistryError

from .errors import APIError
from .schemas import ErrorBody
from .uploads import read_images

if TYPE_CHECKING:
    from .app import State


class ArtistIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="The artist's name, as they want it shown.")
    consent: str = Field("", max_length=2000, description="How and when the artist asked for protection.")


class ArtistOut(BaseModel):
    name: str
    consent: str
    created_at: str
    works: int


class ArtistsOut(BaseModel):
    artists: list[ArtistOut]


class WorkOut(BaseModel):
    id: int
    source: str
    sha256: str
    created_at: str
    original_kept: bool


class ArtistDetailOut(ArtistOut):
    work_list: list[WorkOut]


class Skipped(BaseModel):
    source: str
    code: str
    message: str


class EnrolOut(BaseModel):
    artist: str
    added: int
    skipped: list[Skipped]
    works: int = Field(description="Works enrolled for the artist after this request.")


class RemovedOut(BaseModel):
    artist: str
    removed_works: int


def match_to_dict(m: ArtistMatch) -> dict:
    return {"artist": m.artist, "similarity": m.similarity, "passes": m.passes,
            "nearest_works": [{"work_id": w.work_id, "source": w.source, "sha256": w.sha256,
                               "similarity": w.similarity} for w in m.nearest_works]}


_ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 404, 409, 413, 503)}
_IMAGES_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}, "required": ["files"]}}}}


def router(state: State, require_key) -> APIRouter:
    """The /v1/artists routes, bound to the app's state; every one needs an API key."""
    r = APIRouter(prefix="/v1/artists", tags=["artists"], dependencies=[Depends(require_key)], responses=_ERRORS)

    def registry():
        if state.registry is None or state.style is None:
            raise APIError("attribution_off", "this service runs without a style encoder, so there is no registry")
        return state.registry

    async def in_thread(fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(state.decode_pool, lambda: fn(*args, **kwargs))

    def not_found_or_conflict(exc: RegistryError) -> APIError:
        message = str(exc)
        if message.startswith("no artist named"):
            return APIError("artist_not_found", message)
        if "already" in message or "taken" in message or "exists" in message:
            return APIError("artist_exists", message)
        return APIError("registry_error", message)

    @r.get("", response_model=ArtistsOut, summary="Enrolled artists and how many works each")
    async def list_artists(reg=Depends(registry)):
        artists = await in_thread(reg.list_artists)
        return {"artists": [a.__dict__ for a in artists]}

    @r.post("", response_model=ArtistOut, status_code=201, summary="Enrol an artist (no works yet)")
    async def add_artist(body: ArtistIn, reg=Depends(registry)):
        try:
            artist = await in_thread(reg.add_artist, body.name, consent=body.consent)
        except RegistryError as exc:
            raise not_found_or_conflict(exc) from None
        return artist.__dict__

    @r.get("/{name}", response_model=ArtistDetailOut, summary="One artist and their enrolled works")
    async def get_artist(name: str, reg=Depends(registry)):
        try:
            artist = await in_thread(reg.get_artist, name)
            works = await in_thread(reg.works, name)
        except RegistryError as exc:
            raise not_found_or_conflict(exc) from None
        return {**artist.__dict__, "work_list": [{k: w[k] for k in WorkOut.model_fields} for w in works]}

    @r.get("/{name}/works/{work_id}/thumbnail", summary="A small WebP of an enrolled work",
           response_class=Response, responses={200: {"content": {"image/webp": {}}}})
    async def thumbnail(name: str, work_id: int, reg=Depends(registry)):
        try:
            works = await in_thread(reg.works, name)
        except RegistryError as exc:
            raise not_found_or_conflict(exc) from None
        for w in works:
            if w["id"] == work_id:
                return Response(w["thumbnail"], media_type="image/webp")
        raise APIError("artist_not_found", f"{name!r} has no work with id {work_id}")

    @r.post("/{name}/works", response_model=EnrolOut, summary="Add works to an artist's portfolio",
            openapi_extra={"requestBody": _IMAGES_BODY})
    async def enrol(name: str, request: Request, reg=Depends(registry)):
        uploads = await read_images(request, state.settings.max_body_bytes, state.settings.max_enrol_items)
        if len(uploads) > state.settings.max_enrol_items:
            raise APIError("too_many_items", f"{len(uploads)} images; the limit is {state.settings.max_enrol_items}")
        # Works are named by their upload file names (in the database and the skipped list).
        names = [u.filename or f"<file #{i}>" for i, u in enumerate(uploads)]
        try:
            report = await in_thread(reg.enrol, name, [u.data for u in uploads], state.style, create=False,
                                     labels=names)
        except RegistryError as exc:
            raise not_found_or_conflict(exc) from None
        artist = await in_thread(reg.get_artist, name)
        return {"artist": name, "added": report.added, "works": artist.works,
                "skipped": [{"source": label, "code": code, "message": message}
                            for label, code, message in report.skipped]}

    @r.delete("/{name}", response_model=RemovedOut, summary="Remove an artist and all their works")
    async def remove(name: str, reg=Depends(registry)):
        try:
            n = await in_thread(reg.remove_artist, name)
        except RegistryError as exc:
            raise not_found_or_conflict(exc) from None
        return {"artist": name, "removed_works": n}

    return r


def top_artists(state: State, embedding: np.ndarray) -> list[dict]:
    """The enrolled artists closest in style to one embedding (empty when nobody is enrolled)."""
    matches = state.registry.match(embedding, k=state.settings.artists_top_k, threshold=state.style.threshold)
    return [match_to_dict(m) for m in matches]
