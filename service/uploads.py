"""Reading uploads into memory: the body is capped while it streams in, then parsed.

Nothing is written to disk: multipart bodies are parsed with python-multipart's streaming parser
straight into bytes (Starlette's form parser would spool files over 1 MB to a temporary file).
"""

from __future__ import annotations

import dataclasses

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from .errors import APIError

RAW_TYPES = ("application/octet-stream",)
MAX_BOUNDARY = 70  # characters, RFC 2046 section 5.1.1


@dataclasses.dataclass
class Upload:
    """One uploaded file: its form field, the client's file name (if any) and its bytes."""

    field: str
    filename: str | None
    data: bytes


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``max_bytes`` (from Content-Length
    before reading, else while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise APIError("bad_request", f"Content-Length {declared!r} is not a number") from None
        if n > max_bytes:
            raise APIError("too_large", f"request body of {n} bytes exceeds the limit of {max_bytes} bytes")
    buf = bytearray()
    try:
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > max_bytes:
                raise APIError("too_large", f"request body exceeds the limit of {max_bytes} bytes")
    except ClientDisconnect:
        # Nobody is left to answer; a 400 (never sent) keeps it out of the error log as a bug.
        raise APIError("bad_request", "the client disconnected before sending the whole body") from None
    return bytes(buf)


def parse_multipart(body: bytes, content_type: str, max_parts: int) -> list[Upload]:
    """The file parts of a multipart/form-data body (fields without a file name are ignored)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise APIError("bad_request", "multipart/form-data without a boundary")
    if len(boundary) > MAX_BOUNDARY:  # python-multipart itself fails on boundaries over 256 bytes
        raise APIError("bad_request", f"multipart boundary of {len(boundary)} characters; "
                                      f"at most {MAX_BOUNDARY} are allowed (RFC 2046)")
    parts: list[dict] = []
    state: dict = {}

    def on_part_begin() -> None:
        state.update(headers={}, field=b"", value=b"", data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"] += data[start:end]

    def on_part_end() -> None:
        parts.append({"headers": state["headers"], "data": bytes(state["data"])})
        if len(parts) > max_parts:
            raise APIError("too_many_items", f"more than {max_parts} parts in one request")

    try:
        parser = MultipartParser(boundary, {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_part_data": on_part_data, "on_part_end": on_part_end})
        parser.write(body)
        parser.finalize()
    except APIError:
        raise
    except Exception as exc:  # python-multipart raises its own error types for malformed bodies
        raise APIError("bad_request", f"malformed multipart body: {exc}") from None
    uploads = []
    for part in parts:
        disposition = part["headers"].get(b"content-disposition")
        if not disposition:
            continue
        _, opts = parse_options_header(disposition)
        if b"filename" not in opts:
            continue  # a plain form field, not a file
        uploads.append(Upload(field=opts.get(b"name", b"").decode("utf-8", "replace"),
                              filename=opts[b"filename"].decode("utf-8", "replace") or None, data=part["data"]))
    return uploads


async def read_images(request: Request, max_bytes: int, max_items: int) -> list[Upload]:
    """The images of a request: the file parts of a multipart body, or the raw body itself
    (``image/*`` or ``application/octet-stream``)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        body = await read_body(request, max_bytes)
        uploads = parse_multipart(body, content_type, max_parts=max_items + 8)
        if not uploads:
            raise APIError("bad_request", "the multipart body has no file part (send the image as a file field)")
        return uploads
    if media.startswith("image/") or media in RAW_TYPES or media == "":
        body = await read_body(request, max_bytes)
        return [Upload(field="body", filename=None, data=body)]
    raise APIError("unsupported_format", f"Content-Type {media!r}: send multipart/form-data, image/* or "
                                         "application/octet-stream")
