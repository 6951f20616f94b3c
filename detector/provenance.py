"""Provenance signals: what an image file says about how it was made, read but never trusted.

Generators and the tools around them write their origin into the file: a signed C2PA manifest
with a ``digitalSourceType``, an IPTC ``DigitalSourceType`` in the XMP packet, the text chunks
that Automatic1111, ComfyUI and NovelAI put into their PNGs, or a generator's name in EXIF
``Software``. :func:`read_provenance` turns each into a named :class:`Signal`.

How the detector uses them (``Detector.verdict``):

* a signal with ``declares_ai`` makes the label ``ai-mimicry`` even when the pixels look human:
  the file says it is AI-made, and no one forges that to their own disadvantage. ``score`` stays the
  model's calibrated score and ``evidence["label_reason"]`` says ``"declared-ai-by-metadata"``;
* a missing signal proves nothing (most uploads have their metadata stripped) and never lowers a
  score;
* a signal that says "captured by a camera" or "made by a human" never clears an image: unsigned
  metadata is trivially forged, and even a valid C2PA signature only says who signed. It is reported.

Only the metadata that Pillow has already read while decoding is looked at
(``mimicry.detector.decode.decode_with_metadata``), plus one byte search for a C2PA (JUMBF) box; c2pa-python
runs only for files that carry one, so a scan of ordinary files pays almost nothing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import mmap
import os
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .decode import ImageMetadata, Source

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# IPTC digital source types that say "made by a trained generative model" (in whole or in part).
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
DECLARED_AI = "declared-ai-by-metadata"
MAX_VALUE_CHARS = 300

_C2PA_MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
              "TIFF": "image/tiff", "GIF": "image/gif"}
# Readers never reach out: no remote manifests, no OCSP (uploads are untrusted; scans are offline).
_C2PA_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}

# Generator names as tools write them into Software-like fields. Deliberately narrow: a pattern here
# flags a file, so a word with an everyday meaning ("flux", "imagen", "diffusers") must not match.
_GENERATORS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(rx, re.IGNORECASE)) for name, rx in (
    ("Automatic1111", r"automatic1111|\ba1111\b|stable-diffusion-webui"),
    ("ComfyUI", r"\bcomfyui\b"),
    ("NovelAI", r"\bnovelai\b"),
    ("InvokeAI", r"\binvokeai\b"),
    ("Fooocus", r"\bfooocus\b"),
    ("Stable Diffusion", r"stable[ _-]?diffusion|\bsdxl\b"),
    ("Midjourney", r"\bmidjourney\b"),
    ("DALL-E", r"\bdall[-\u00b7]?e\b"),
    ("Adobe Firefly", r"\badobe firefly\b"),
    ("FLUX", r"\bflux\.1\b"),
    ("Leonardo.Ai", r"\bleonardo\.ai\b"),
    ("Ideogram", r"\bideogram\b"),
    ("DreamStudio", r"\bdreamstudio\b"),
    ("NightCafe", r"\bnightcafe\b"),
    ("Craiyon", r"\bcraiyon\b"),
))
# Automatic1111 (and forks: Forge, SD.Next, Fooocus' A1111 mode) end their "parameters" with
# "Steps: 20, Sampler: ..., CFG scale: ..., Seed: ...". Two searches, not one pattern with ".*"
# between them, so that hostile text cannot make the match quadratic.
_A1111_STEPS = re.compile(r"\bSteps: \d+")
_A1111_SETTING = re.compile(r"\b(?:Sampler|CFG scale|Seed): ")
_NOVELAI_KEYS = frozenset({"steps", "sampler", "seed", "scale", "uc", "n_samples", "noise"})
_XMP_NS_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
_EXIF_IMAGE_DESCRIPTION, _EXIF_SOFTWARE, _EXIF_IFD, _EXIF_USER_COMMENT = 0x010E, 0x0131, 0x8769, 0x9286


@dataclasses.dataclass(frozen=True)
class Signal:
    """One statement a file makes about its origin.

    ``signal`` names the kind (``"c2pa.digital_source_type"``, ``"png.a1111_parameters"``...),
    ``value`` is what the file says (cut to :data:`MAX_VALUE_CHARS`), ``source`` where it says it.
    ``declares_ai`` is True when the statement is "a generative model made this". ``verified`` is
    True only for a C2PA manifest whose signature and content hashes check out; ``signature`` is
    the C2PA validation state (``"Trusted"``: signer on a configured trust list, ``"Valid"``:
    intact but signer unknown, ``"Invalid"``: tampered or broken) and None for unsigned metadata,
    which anyone can write. ``generator`` names the tool when it is known.
    """

    signal: str
    value: str
    declares_ai: bool
    source: str
    verified: bool = False
    signature: str | None = None
    generator: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)


def read_provenance(metadata: ImageMetadata, source: Source | None = None, *, c2pa: bool = True) -> list[Signal]:
    """The provenance signals of one decoded file, C2PA first; an empty list when it says nothing.

    ``metadata`` comes from ``mimicry.detector.decode.decode_with_metadata``. ``source`` (a path or the
    encoded bytes) is needed only for C2PA, which is read when ``c2pa`` is set and the file holds a
    C2PA box (``metadata.c2pa_box``, else :func:`has_c2pa_marker`). Never raises for a file's
    content: a manifest or packet that cannot be read becomes a ``*.unreadable`` signal.
    """
    signals: list[Signal] = []
    if c2pa and source is not None:
        has_box = metadata.c2pa_box if metadata.c2pa_box is not None else has_c2pa_marker(source, metadata.format)
        if has_box:
            signals += read_c2pa(source, metadata.format)
    if metadata.xmp:
        signals += _xmp_signals(metadata.xmp)
    if metadata.text:
        signals += _text_signals(metadata.text)
    if metadata.exif is not None:
        signals += _exif_signals(metadata.exif)
    return signals


def declares_ai(signals: Iterable[Signal | Mapping[str, Any]]) -> bool:
    """True when any signal (a :class:`Signal` or its dict) says a generative model made the file."""
    return any(s.declares_ai if isinstance(s, Signal) else bool(s.get("declares_ai")) for s in signals)


def source_type_declares_ai(value: str) -> bool:
    """Whether an IPTC digital source type (full URI or bare code) says a trained model made it."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1] in AI_SOURCE_TYPES


def name_generator(text: str) -> str | None:
    """The known generator that ``text`` names (for Software-like fields), or None."""
    for name, pattern in _GENERATORS:
        if pattern.search(text):
            return name
    return None


# ----------------------------------------------------------------------------- C2PA


def has_c2pa_marker(source: Source, fmt: str | None = None) -> bool:
    """Whether the encoded file holds a C2PA manifest store.

    A PNG's chunks (``caBX``) and a WebP's (``C2PA``) are walked by their headers alone; any other
    file gets one byte search for a JUMBF ``jumb`` box labelled ``c2pa``, which every embedding
    carries (the file is memory-mapped, not read into Python). ``fmt`` is Pillow's format name, when
    known. False for in-memory images and arrays.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return _has_c2pa(m, fmt)
        except (OSError, ValueError):  # unreadable or empty: decoding reports that, not this
            return False
    if isinstance(source, (bytes, bytearray)):
        return _has_c2pa(source, fmt)
    if isinstance(source, memoryview):
        return _has_c2pa(source.tobytes(), fmt)
    return False


_MAX_CHUNKS = 10_000  # a file of more chunks than this is searched byte by byte instead


def _has_c2pa(buf, fmt: str | None) -> bool:
    if fmt == "PNG" and buf[:8] == b"\x89PNG\r\n\x1a\n":
        found = _walk_chunks(buf, 8, ">I4s", b"caBX", b"IEND", pad=4)
    elif fmt == "WEBP" and buf[:4] == b"RIFF" and buf[8:12] == b"WEBP":
        found = _walk_chunks(buf, 12, "<4sI", b"C2PA", None, pad=0)
    else:
        found = None
    return _find_c2pa_box(buf) if found is None else found


def _walk_chunks(buf, pos: int, layout: str, wanted: bytes, last: bytes | None, pad: int) -> bool | None:
    """Whether a chunk of type ``wanted`` comes before ``last`` or the end; None if the walk gave up.
    PNG headers are (length, type) and a CRC follows the data (``pad=4``); RIFF headers are
    (type, length) and odd lengths are padded to even."""
    end = len(buf)
    for _ in range(_MAX_CHUNKS):
        if pos + 8 > end:
            return False
        a, b = struct.unpack_from(layout, buf, pos)
        kind, length = (b, a) if layout.startswith(">") else (a, b)
        if kind == wanted:
            return True
        if kind == last:
            return False
        pos += 8 + length + pad + (length & 1 if not pad else 0)
    return None


def _find_c2pa_box(buf) -> bool:
    i = buf.find(b"jumb")
    while i >= 0:
        # The superbox's description box follows at once and holds the label "c2pa".
        if buf.find(b"c2pa", i + 4, i + 64) >= 0:
            return True
        i = buf.find(b"jumb", i + 4)
    return False


def read_c2pa(source: Source, fmt: str | None = None) -> list[Signal]:
    """Signals from the C2PA manifest store in ``source`` (a path or encoded bytes), validated.

    One ``c2pa.digital_source_type`` per declared source type in any manifest of the store (the
    active one and its ingredients: an AI image edited later is still AI-made), and one
    ``c2pa.claim_generator`` for the active manifest. Empty when there is no manifest.
    """
    try:
        import c2pa
    except ImportError:
        return [Signal("c2pa.unreadable", "the file has a C2PA manifest but c2pa-python is not installed",
                       False, "C2PA manifest")]
    mime = _C2PA_MIME.get(fmt or "")
    try:
        with c2pa.Settings.from_dict(_C2PA_SETTINGS) as settings, c2pa.Context(settings) as context, \
                _open_binary(source) as stream:
            reader = c2pa.Reader.try_create(mime, stream, None, context)
            if reader is None:
                return []
            with reader:
                store = json.loads(reader.json())
    except Exception as exc:  # c2pa raises its own error types for broken or hostile stores
        return [Signal("c2pa.unreadable", _cut(f"{type(exc).__name__}: {exc}"), False, "C2PA manifest")]
    return _store_signals(store)


def _open_binary(source: Source):
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb")
    return io.BytesIO(bytes(source))


def _store_signals(store: Mapping[str, Any]) -> list[Signal]:
    state = store.get("validation_state")
    if not isinstance(state, str):  # older stores: no state, only a list of failures
        state = "Invalid" if store.get("validation_status") else "Valid"
    verified = state in ("Valid", "Trusted")
    manifests = store.get("manifests") or {}
    active_label = store.get("active_manifest")
    signals = []
    # The active manifest first, then its ingredients' manifests in the store's order.
    for label in sorted(manifests, key=lambda k: k != active_label):
        manifest = manifests[label]
        if not isinstance(manifest, Mapping):
            continue
        where = "C2PA manifest" if label == active_label else "C2PA ingredient manifest"
        signer = manifest.get("signature_info") or {}
        if isinstance(signer, Mapping) and (signer.get("common_name") or signer.get("issuer")):
            where += f" signed by {signer.get('common_name') or '?'} ({signer.get('issuer') or '?'})"
        generator = _claim_generator(manifest)
        seen = set()
        for source_type in _digital_source_types(manifest):
            if source_type in seen:
                continue
            seen.add(source_type)
            signals.append(Signal("c2pa.digital_source_type", _cut(source_type), source_type_declares_ai(source_type),
                                  where, verified, state, name_generator(generator) if generator else None))
        if label == active_label and generator:
            signals.append(Signal("c2pa.claim_generator", _cut(generator), name_generator(generator) is not None,
                                  where, verified, state, name_generator(generator)))
    return signals


def _digital_source_types(manifest: Mapping[str, Any]) -> list[str]:
    found = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, Mapping) or not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        data = assertion.get("data") or {}
        for action in (data.get("actions") or []) if isinstance(data, Mapping) else []:
            if isinstance(action, Mapping) and isinstance(action.get("digitalSourceType"), str):
                found.append(action["digitalSourceType"])
    return found


def _claim_generator(manifest: Mapping[str, Any]) -> str:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list):
        names = [f"{i.get('name', '')} {i.get('version', '')}".strip() for i in info if isinstance(i, Mapping)]
        if any(names):
            return "; ".join(n for n in names if n)
    generator = manifest.get("claim_generator")
    return generator if isinstance(generator, str) else ""


# ----------------------------------------------------------------------------- XMP


def _xmp_signals(xmp: bytes) -> list[Signal]:
    if b"DigitalSourceType" not in xmp and b"CreatorTool" not in xmp:
        return []  # the common case (camera and editor packets): no XML parsing at all
    from defusedxml import ElementTree  # entity expansion and external entities refused
    try:
        root = ElementTree.fromstring(xmp.strip(b"\x00 \r\n\t"))
    except Exception as exc:  # malformed XML, or an entity attack defusedxml refused
        return [Signal("xmp.unreadable", _cut(f"{type(exc).__name__}: {exc}"), False, "XMP packet")]
    signals = [Signal("xmp.digital_source_type", _cut(value), source_type_declares_ai(value),
                      "XMP Iptc4xmpExt:DigitalSourceType") for value in _xmp_values(root, "DigitalSourceType")]
    for value in _xmp_values(root, "CreatorTool"):
        if generator := name_generator(value):
            signals.append(Signal("xmp.creator_tool", _cut(value), True, "XMP xmp:CreatorTool", generator=generator))
    return signals


def _xmp_values(root, name: str) -> list[str]:
    """The distinct values of property ``name``: as an attribute, as element text, or as an
    ``rdf:resource``, whatever the namespace prefix (writers differ)."""
    found = []
    for element in root.iter():
        for key, value in element.attrib.items():
            if key.rsplit("}", 1)[-1] == name and value.strip():
                found.append(value.strip())
        if str(element.tag).rsplit("}", 1)[-1] == name:
            text = element.get(_XMP_NS_RDF + "resource") or "".join(element.itertext())
            if text.strip():
                found.append(text.strip())
    return list(dict.fromkeys(found))


# ----------------------------------------------------------------------------- PNG text chunks


def _text_signals(text: Mapping[str, str]) -> list[Signal]:
    signals = []
    params = text.get("parameters")
    if params and _is_a1111(params):
        signals.append(Signal("png.a1111_parameters", _cut(params), True, "PNG text chunk 'parameters'",
                              generator="Automatic1111"))
    for key in ("prompt", "workflow"):
        summary = _comfyui_summary(text.get(key), key)
        if summary is not None:
            signals.append(Signal(f"png.comfyui_{key}", _cut(summary), True, f"PNG text chunk '{key}'",
                                  generator="ComfyUI"))
    comment = _json_object(text.get("Comment"))
    if comment is not None and len(_NOVELAI_KEYS.intersection(comment)) >= 2:
        signals.append(Signal("png.novelai_comment", _cut(text["Comment"]), True, "PNG text chunk 'Comment'",
                              generator="NovelAI"))
    for key in ("invokeai_metadata", "sd-metadata"):
        if _json_object(text.get(key)) is not None:
            signals.append(Signal(f"png.{key.replace('-', '_')}", _cut(text[key]), True, f"PNG text chunk '{key}'",
                                  generator="InvokeAI"))
    for key in ("Software", "Source"):
        value = text.get(key)
        if value and (generator := name_generator(value)):
            signals.append(Signal(f"png.{key.lower()}", _cut(value), True, f"PNG text chunk '{key}'",
                                  generator=generator))
    return signals


def _is_a1111(text: str) -> bool:
    """Whether ``text`` holds Automatic1111-style generation parameters."""
    return _A1111_STEPS.search(text) is not None and _A1111_SETTING.search(text) is not None


def _comfyui_summary(value: str | None, key: str) -> str | None:
    """The node types of a ComfyUI API prompt (``{id: {"class_type": ...}}``) or UI workflow
    (``{"nodes": [{"type": ...}]}``), or None if ``value`` is neither."""
    graph = _json_object(value)
    if graph is None:
        return None
    if key == "prompt":
        types = [n.get("class_type") for n in graph.values() if isinstance(n, Mapping)]
    else:
        nodes = graph.get("nodes")
        types = [n.get("type") for n in nodes if isinstance(n, Mapping)] if isinstance(nodes, list) else []
    types = [t for t in types if isinstance(t, str)]
    if not types:
        return None
    return f"{len(types)} nodes: " + ", ".join(sorted(set(types)))


def _json_object(value: str | None) -> dict | None:
    if not value or not value.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


# ----------------------------------------------------------------------------- EXIF


def _exif_signals(exif) -> list[Signal]:
    signals = []
    software = _exif_text(exif.get(_EXIF_SOFTWARE))
    if software and (generator := name_generator(software)):
        signals.append(Signal("exif.software", _cut(software), True, "EXIF Software (0x0131)", generator=generator))
    description = _exif_text(exif.get(_EXIF_IMAGE_DESCRIPTION))
    if description and _is_a1111(description):
        signals.append(Signal("exif.image_description", _cut(description), True,
                              "EXIF ImageDescription (0x010E): generation parameters", generator="Automatic1111"))
    elif description and (generator := name_generator(description)):
        # Free text that mentions a generator ("not made with Midjourney") is no declaration: reported only.
        signals.append(Signal("exif.image_description", _cut(description), False,
                              "EXIF ImageDescription (0x010E): free text naming a generator", generator=generator))
    if _EXIF_IFD in exif:
        try:
            comment = _exif_text(exif.get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT))
        except Exception:  # a broken sub-IFD is not worth a signal
            comment = ""
        if comment and _is_a1111(comment):
            # Automatic1111 writes a JPEG's or WebP's "parameters" here.
            signals.append(Signal("exif.user_comment", _cut(comment), True, "EXIF UserComment (0x9286)",
                                  generator="Automatic1111"))
    return signals


def _exif_text(value) -> str:
    """An EXIF string, or a UserComment (8-byte charset code, then the text) decoded."""
    if isinstance(value, str):
        return value.strip("\x00 ")
    if isinstance(value, bytes):
        code, body = value[:8], value[8:]
        if code.startswith(b"UNICODE"):
            # UTF-16 in the file's byte order, unmarked: ASCII-range text shows it by where its zeros are.
            little = len(body) > 1 and body[0] != 0 and body[1] == 0
            return body.decode("utf-16-le" if little else "utf-16-be", "replace").strip("\x00 ")
        data = body if code in (b"ASCII\x00\x00\x00", b"\x00" * 8, b"JIS\x00\x00\x00\x00\x00") else value
        return data.decode("utf-8", "replace").strip("\x00 ")
    return ""


def _cut(text: str) -> str:
    text = str(text)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def read_file_provenance(path: str | os.PathLike, **kwargs) -> list[Signal]:
    """Decode ``path`` and read its provenance (a convenience for tools; scans get it in the verdict)."""
    from .decode import decode_with_metadata

    decoded = decode_with_metadata(Path(path), **kwargs)
    return read_provenance(decoded.metadata, path)
