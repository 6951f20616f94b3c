"""The artist registry over HTTP: enrol portfolios, list and remove artists, and attribution.

Every route here needs an API key (``X-API-Key``) of scope ``enrol`` (list artists, see one with their
works and thumbnails, create artists, add works) or ``admin`` (also remove an artist): enrolling or
removing an artist changes what the service says about other people's images, and the list of
enrolled artists, their consent notes and their works is not public (:mod:`mimicry.service.auth`).

Names in paths: ``{name}`` may hold ``/`` (written plainly or as ``%2F``); it is found as the registry
finds names (its stored form, or any with the same letters: :func:`mimicry.detector.registry.name_key`),
and answers give the stored name. A name that the registry refuses is 422 ``validation_error``; one
that is taken (in any form) 409 ``artist_exists``.

Attribution comes with each detect verdict (``evidence["artists"]``) when anyone is enrolled: the
evidence of :mod:`mimicry.detector.attribution`, the component every door uses (scan rows and
``mimicry check`` show the same), shaped by who asks (:func:`visible_matches`): nothing for an anonymous caller unless the operator set
``show_artists_to_anonymous``, and then artists' names, similarities, whether they pass and
``attributed_to`` (the artist the image is attributed to, or None: no enrolled artist); the same
for a ``detect`` key; the nearest works' ids, file names and sha256 only for ``enrol`` and ``admin``
keys, which may read them from the registry anyway.

A copy of an enrolled work (the same picture, re-encoded or resized: :mod:`mimicry.detector.copies`) is
``evidence["copy_of"]``, whatever the style similarity says: the artist and the distance for
everyone who may see artists; the work's id, file name and sha256 too for ``enrol`` and ``admin``
keys. It is None when the image is no copy of any enrolled work.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from mimicry.detector.registry import RegistryError

from . import auth
from .deps import AdminKey, EnrolKey, RegistryDep, StateDep
from .errors import APIError
from .schemas import ErrorBody
from .state import State
from .uploads import read_images
from .work import decode_costs, offload


class ArtistIn(BaseModel):
    name: str = Field(min_length=1, max_length=200,
                      description="The artist's name, as they want it shown: in one script, without invisible "
                                  "characters; stored in NFC without surrounding spaces.")
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


def caller_view(settings) -> str | None:
    """What the current detect caller may see of the registry: ``"works"`` (enrol and admin keys),
    ``"names"`` (detect keys; anonymous callers where ``show_artists_to_anonymous``), or None."""
    info = auth.current_caller()
    if info is None:
        return "names" if settings.show_artists_to_anonymous else None
    return "works" if info.allows("enrol") else "names"


async def visible_matches(state: State, style_matches, prepared) -> dict:
    """The ``artists`` and ``copy_of`` evidence for one upload as the current caller may see it (see
    the module's docstring): ``{}`` when they may see nothing, without spending a style embedding on
    it, else the evidence (``mimicry.detector.attribution.Evidence.to_dict()``) that
    ``await style_matches(prepared)`` returns, less what the caller may not see."""
    view = caller_view(state.settings)
    if view is None:
        return {}
    found = await style_matches(prepared)
    if view != "works":
        copy_of = found["copy_of"]
        found = {"artists": [{**m, "nearest_works": [{"similarity": w["similarity"]} for w in m["nearest_works"]]}
                             for m in found["artists"]],
                 "attributed_to": found["attributed_to"],
                 "copy_of": None if copy_of is None else {k: copy_of[k] for k in ("artist", "distance")}}
    return found


_ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 404, 409, 413, 503, 504)}
_IMAGES_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}, "required": ["files"]}}}}


# The /v1/artists routes. Each handler's first parameter is the caller's key, of the route's scope (``enrol``, or
# ``admin`` to remove an artist): the key is checked first, so a caller without one learns nothing else (not
# even whether this service has a registry).
router = APIRouter(prefix="/v1/artists", tags=["artists"], responses={**_ERRORS, 403: {"model": ErrorBody}})


async def in_thread(state: State, fn, *args, **kwargs):
    return await offload(state.lanes.small, lambda: fn(*args, **kwargs))


def not_found_or_conflict(exc: RegistryError) -> APIError:
    code = getattr(exc, "code", "registry_error")
    api_code = {"artist_not_found": "artist_not_found", "artist_exists": "artist_exists",
                "invalid_name": "validation_error"}.get(code, "registry_error")
    return APIError(api_code, str(exc))


# {name:path}: a name may hold '/'. The thumbnail route comes before the artist route, which would
# otherwise take ".../works/1/thumbnail" for part of a name (the registry refuses names that
# hold a 'works' part, so no artist's name is taken for a thumbnail's path).


@router.get("", response_model=ArtistsOut, summary="Enrolled artists and how many works each")
async def list_artists(key: EnrolKey, state: StateDep, reg: RegistryDep):
    artists = await in_thread(state, reg.list_artists)
    return {"artists": [a.__dict__ for a in artists]}


@router.post("", response_model=ArtistOut, status_code=201, summary="Enrol an artist (no works yet)")
async def add_artist(key: EnrolKey, body: ArtistIn, state: StateDep, reg: RegistryDep):
    try:
        artist = await in_thread(state, reg.add_artist, body.name, consent=body.consent)
    except RegistryError as exc:
        raise not_found_or_conflict(exc) from None
    return artist.__dict__


@router.get("/{name:path}/works/{work_id}/thumbnail", summary="A small WebP of an enrolled work",
            response_class=Response, responses={200: {"content": {"image/webp": {}}}})
async def thumbnail(key: EnrolKey, name: str, work_id: int, state: StateDep, reg: RegistryDep):
    try:
        works = await in_thread(state, reg.works, name)
    except RegistryError as exc:
        raise not_found_or_conflict(exc) from None
    for w in works:
        if w["id"] == work_id:
            return Response(w["thumbnail"], media_type="image/webp")
    raise APIError("artist_not_found", f"{name!r} has no work with id {work_id}")


@router.get("/{name:path}", response_model=ArtistDetailOut, summary="One artist and their enrolled works")
async def get_artist(key: EnrolKey, name: str, state: StateDep, reg: RegistryDep):
    try:
        artist = await in_thread(state, reg.get_artist, name)
        works = await in_thread(state, reg.works, artist.name)
    except RegistryError as exc:
        raise not_found_or_conflict(exc) from None
    return {**artist.__dict__, "work_list": [{k: w[k] for k in WorkOut.model_fields} for w in works]}


@router.post("/{name:path}/works", response_model=EnrolOut, summary="Add works to an artist's portfolio",
             openapi_extra={"requestBody": _IMAGES_BODY})
async def enrol(key: EnrolKey, name: str, request: Request, state: StateDep, reg: RegistryDep):
    settings, lanes = state.settings, state.lanes
    # The limit counts an enrolment from here, before its body is read: checked and taken with no await
    # between, so concurrent requests cannot all pass the check and then hold their bodies at once.
    if lanes.enrolling >= settings.max_concurrent_enrol:
        state.metrics.overloaded.inc()
        raise APIError("overloaded", f"{lanes.enrolling} enrolments are in progress; retry shortly",
                       headers={"Retry-After": str(settings.retry_after_s)})
    lanes.enrolling += 1
    try:
        return await _enrol(name, request, state, reg)
    finally:
        lanes.enrolling -= 1


async def _enrol(name: str, request: Request, state, reg) -> dict:
    settings, lanes = state.settings, state.lanes
    uploads = await read_images(request, settings.max_body_bytes, settings.max_enrol_items)
    if len(uploads) > settings.max_enrol_items:
        raise APIError("too_many_items", f"{len(uploads)} images; the limit is {settings.max_enrol_items}")
    # Works are named by their upload file names (in the database and the skipped list).
    names = [u.filename or f"<file #{i}>" for i, u in enumerate(uploads)]
    await decode_costs(lanes.small, [u.data for u in uploads], draft_size=state.style.config.size,
                       budget=settings.max_request_pixels, max_pixels=settings.max_pixels)
    deadline = time.monotonic() + settings.enrol_timeout_s

    def check_deadline(stage: str, done: int, total: int) -> None:  # between chunks, and between rows
        if time.monotonic() > deadline:
            raise _PastDeadline()

    # One image per encoder call: onnxruntime's memory arena keeps what its largest batch needed (a batch
    # of 8 kept about 240 MB more for the life of the process; one, about 25 MB), and an enrolment is
    # background work, where that memory matters more than the ~25% of speed batching would add.
    try:
        report = await offload(lanes.enrol, lambda: reg.enrol(name, [u.data for u in uploads], state.style,
                                                              create=False, labels=names, batch_size=1,
                                                              progress=check_deadline))
    except RegistryError as exc:
        raise not_found_or_conflict(exc) from None
    except _PastDeadline:
        raise APIError("timeout", f"the enrolment took longer than {settings.enrol_timeout_s:g} s; "
                                  "nothing was added") from None
    try:
        works = (await in_thread(state, reg.get_artist, report.artist)).works
    except RegistryError as exc:  # removed by another request since
        raise not_found_or_conflict(exc) from None
    return {"artist": report.artist, "added": report.added, "works": works,
            "skipped": [{"source": label, "code": code, "message": message}
                        for label, code, message in report.skipped]}


@router.delete("/{name:path}", response_model=RemovedOut, summary="Remove an artist and all their works")
async def remove(key: AdminKey, name: str, state: StateDep, reg: RegistryDep):
    def remove_stored():
        stored = reg.get_artist(name).name
        return stored, reg.remove_artist(stored)

    try:
        stored, n = await in_thread(state, remove_stored)
    except RegistryError as exc:
        raise not_found_or_conflict(exc) from None
    return {"artist": stored, "removed_works": n}


class _PastDeadline(Exception):
    """An enrolment ran past its deadline (raised between chunks; in the write, it rolls back)."""
