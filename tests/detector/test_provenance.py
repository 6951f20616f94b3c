"""Provenance signals from real files, written in the test by the libraries that users' tools use:
Pillow's PngInfo and Exif, XMP packets in JPEG/PNG/WebP/TIFF, and C2PA manifests signed by
c2pa-python's Builder with an ES256 certificate chain made here with ``cryptography``."""

from __future__ import annotations

import datetime
import io
import json

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin, TiffImagePlugin

from mimicry.detector import provenance
from mimicry.detector.decode import decode_with_metadata
from mimicry.detector.provenance import AI_SOURCE_TYPES, DECLARED_AI, declares_ai, has_c2pa_marker, read_provenance

from detector_fixtures import encode, solid

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111 = ("a fox in the style of greg, watercolor\nNegative prompt: blurry\n"
         "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x512, Model: sd15")
COMFY_PROMPT = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}},
                           "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}}})
COMFY_WORKFLOW = json.dumps({"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"},
                                                           {"id": 4, "type": "CheckpointLoaderSimple"}]})
NOVELAI_COMMENT = json.dumps({"prompt": "1girl, watercolor", "steps": 28, "sampler": "k_euler_ancestral",
                              "seed": 42, "scale": 5.0, "uc": "lowres"})
FORMATS = ["JPEG", "PNG", "WEBP", "TIFF"]


def signals_of(data: bytes | str, **kwargs) -> list[provenance.Signal]:
    return read_provenance(decode_with_metadata(data).metadata, data, **kwargs)


def names(signals) -> list[str]:
    return [s.signal for s in signals]


def xmp_packet(source_type: str, *, as_element: bool = False, creator_tool: str | None = None) -> str:
    ns = ('xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
          'xmlns:xmp="http://ns.adobe.com/xap/1.0/"')
    tool = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    if as_element:
        body = (f'<rdf:Description rdf:about="" {ns}{tool}><Iptc4xmpExt:DigitalSourceType '
                f'rdf:resource="{source_type}"/></rdf:Description>')
    else:
        body = f'<rdf:Description rdf:about="" {ns}{tool} Iptc4xmpExt:DigitalSourceType="{source_type}"/>'
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' + body
            + '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def with_xmp(image: Image.Image, fmt: str, xmp: str) -> bytes:
    """Embed ``xmp`` where each format keeps it, with Pillow as tools do."""
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp)
        return encode(image, "PNG", pnginfo=info)
    if fmt == "TIFF":
        ifd = TiffImagePlugin.ImageFileDirectory_v2()
        ifd[700] = xmp.encode()
        ifd.tagtype[700] = 1  # BYTE, as the TIFF/XMP spec says
        return encode(image, "TIFF", tiffinfo=ifd)
    return encode(image, fmt, xmp=xmp.encode())


def png_with_text(image: Image.Image, **chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    return encode(image, "PNG", pnginfo=info)


def with_exif(image: Image.Image, fmt: str, tags: dict[int, str], user_comment: bytes | None = None) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    if user_comment is not None:
        exif.get_ifd(0x8769)[0x9286] = user_comment
    return encode(image, fmt, exif=exif)


# ----------------------------------------------------------------------------- C2PA signing


@pytest.fixture(scope="session")
def signing_chain() -> tuple[bytes, bytes]:
    """An ES256 leaf certificate for C2PA signing and its root, made here (PEM chain, PEM key)."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mimicry-detect tests")])

    def usage(**kw) -> x509.KeyUsage:
        flags = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                     data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                     encipher_only=False, decipher_only=False)
        return x509.KeyUsage(**{**flags, **kw})

    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    valid = dict(not_valid_before=now - datetime.timedelta(days=1), not_valid_after=now + datetime.timedelta(days=30))
    root = (x509.CertificateBuilder(**valid).subject_name(name("Test Root CA")).issuer_name(name("Test Root CA"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder(**valid).subject_name(name("Test Generator")).issuer_name(root.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))
    key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return chain, key


def c2pa_signed(image: Image.Image, fmt: str, source_type: str, chain: tuple[bytes, bytes],
                generator: str = "Test Painter") -> bytes:
    """``image`` as ``fmt`` with a C2PA manifest whose c2pa.created action declares ``source_type``."""
    mime = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "TIFF": "image/tiff"}[fmt]
    manifest = {"claim_generator_info": [{"name": generator, "version": "1.0"}], "title": "test image",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created", "digitalSourceType": source_type}]}}]}
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain[0], chain[1], None))
    out = io.BytesIO()
    with c2pa.Builder(manifest) as builder:
        builder.sign(signer, mime, io.BytesIO(encode(image, fmt)), out)
    return out.getvalue()


def picture(seed: int = 0, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# ----------------------------------------------------------------------------- clean files


@pytest.mark.parametrize("fmt", FORMATS + ["GIF", "BMP"])
def test_a_file_without_metadata_gives_no_signals(fmt, tmp_path):
    data = encode(picture(), fmt)
    (tmp_path / f"a.{fmt.lower()}").write_bytes(data)
    assert signals_of(data) == []
    assert signals_of(str(tmp_path / f"a.{fmt.lower()}")) == []
    assert not has_c2pa_marker(data)


def test_ordinary_editor_metadata_is_not_a_signal():
    data = with_exif(picture(), "JPEG", {0x0131: "Adobe Photoshop 25.0 (Windows)",
                                         0x010E: "Sunset over the harbour"})
    assert signals_of(data) == []
    assert signals_of(png_with_text(picture(), Software="GIMP 2.10", Comment="drawn by hand",
                                    parameters="no generation here")) == []


def test_clean_files_never_open_c2pa(monkeypatch):
    """The scan path's promise: c2pa-python runs only for files carrying a C2PA box."""
    def refuse(*args, **kwargs):
        raise AssertionError("c2pa was invoked for a file without a C2PA box")
    monkeypatch.setattr(provenance, "read_c2pa", refuse)
    for fmt in FORMATS:
        signals_of(with_xmp(picture(), fmt, xmp_packet(IPTC + "digitalCapture")))


# ----------------------------------------------------------------------------- PNG text chunks


def test_a1111_parameters_chunk():
    (s,) = signals_of(png_with_text(picture(), parameters=A1111))
    assert (s.signal, s.declares_ai, s.generator, s.verified, s.signature) == (
        "png.a1111_parameters", True, "Automatic1111", False, None)
    assert "Steps: 20" in s.value and s.source == "PNG text chunk 'parameters'"


def test_comfyui_prompt_and_workflow_chunks():
    signals = signals_of(png_with_text(picture(), prompt=COMFY_PROMPT, workflow=COMFY_WORKFLOW))
    assert names(signals) == ["png.comfyui_prompt", "png.comfyui_workflow"]
    assert all(s.declares_ai and s.generator == "ComfyUI" for s in signals)
    assert signals[0].value == "2 nodes: CheckpointLoaderSimple, KSampler"


def test_novelai_chunks():
    data = png_with_text(picture(), Title="AI generated image", Description="1girl, watercolor",
                         Software="NovelAI", Source="NovelAI Diffusion V4 4F49EC75", Comment=NOVELAI_COMMENT)
    signals = signals_of(data)
    assert names(signals) == ["png.novelai_comment", "png.software", "png.source"]
    assert all(s.declares_ai and s.generator == "NovelAI" for s in signals)


def test_text_chunks_that_only_look_alike_are_not_signals():
    assert signals_of(png_with_text(picture(), prompt="a haiku about spring", workflow="{not json",
                                    Comment=json.dumps({"steps": 3}))) == []


# ----------------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("fmt", FORMATS)
def test_exif_software_naming_a_generator(fmt):
    (s,) = signals_of(with_exif(picture(), fmt, {0x0131: "Stable Diffusion XL 1.0"}))
    assert (s.signal, s.declares_ai, s.generator) == ("exif.software", True, "Stable Diffusion")


def test_exif_image_description_with_parameters_declares_but_free_text_is_only_reported():
    (s,) = signals_of(with_exif(picture(), "JPEG", {0x010E: A1111}))
    assert (s.signal, s.declares_ai) == ("exif.image_description", True)
    (s,) = signals_of(with_exif(picture(), "JPEG", {0x010E: "Hand-inked, not made with Midjourney"}))
    assert (s.signal, s.declares_ai, s.generator) == ("exif.image_description", False, "Midjourney")


@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
def test_a1111_parameters_in_exif_user_comment(encoding):
    """Automatic1111 saves a JPEG's or WebP's parameters as a UNICODE EXIF UserComment."""
    data = with_exif(picture(), "JPEG", {}, user_comment=b"UNICODE\x00" + A1111.encode(encoding))
    (s,) = signals_of(data)
    assert (s.signal, s.declares_ai, s.generator) == ("exif.user_comment", True, "Automatic1111")
    assert s.value.startswith("a fox in the style")


# ----------------------------------------------------------------------------- XMP


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("code", sorted(AI_SOURCE_TYPES))
@pytest.mark.parametrize("as_element", [False, True])
def test_xmp_digital_source_type_declaring_ai(fmt, code, as_element):
    (s,) = signals_of(with_xmp(picture(), fmt, xmp_packet(IPTC + code, as_element=as_element)))
    assert (s.signal, s.value, s.declares_ai, s.verified) == ("xmp.digital_source_type", IPTC + code, True, False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_xmp_capture_claim_is_reported_not_declared(fmt):
    (s,) = signals_of(with_xmp(picture(), fmt, xmp_packet(IPTC + "digitalCapture")))
    assert (s.signal, s.declares_ai) == ("xmp.digital_source_type", False)


def test_xmp_creator_tool_naming_a_generator():
    signals = signals_of(with_xmp(picture(), "JPEG", xmp_packet(IPTC + "digitalCreation", creator_tool="ComfyUI")))
    assert [(s.signal, s.declares_ai) for s in signals] == [("xmp.digital_source_type", False),
                                                            ("xmp.creator_tool", True)]


def test_hostile_xmp_is_refused_not_expanded():
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><DigitalSourceType>&b;</DigitalSourceType></x:xmpmeta>')
    (s,) = signals_of(encode(picture(), "JPEG", xmp=bomb.encode()))
    assert (s.signal, s.declares_ai) == ("xmp.unreadable", False)
    assert "Entities" in s.value or "DTD" in s.value


# ----------------------------------------------------------------------------- C2PA


@pytest.mark.parametrize("fmt", FORMATS)
def test_c2pa_manifest_declaring_ai(fmt, signing_chain, tmp_path):
    data = c2pa_signed(picture(), fmt, IPTC + "trainedAlgorithmicMedia", signing_chain)
    path = tmp_path / f"signed.{fmt.lower()}"
    path.write_bytes(data)
    # JPEG and TIFF: seen in the headers Pillow read; PNG and WebP: their chunks are walked.
    assert decode_with_metadata(data).metadata.c2pa_box is (True if fmt in ("JPEG", "TIFF") else None)
    assert has_c2pa_marker(data, fmt) and has_c2pa_marker(path, fmt) and has_c2pa_marker(data)
    for source in (data, path):
        signals = signals_of(source)
        assert names(signals) == ["c2pa.digital_source_type", "c2pa.claim_generator"]
        dst, gen = signals
        assert (dst.value, dst.declares_ai, dst.verified, dst.signature) == (
            IPTC + "trainedAlgorithmicMedia", True, True, "Valid")  # intact, signer on no trust list
        assert "Test Generator" in dst.source
        assert (gen.value, gen.declares_ai) == ("Test Painter 1.0", False)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_chunk_walk_looks_only_at_c2pa_chunks(fmt):
    """The bytes of a C2PA box inside some other chunk are no manifest: the walk skips them, where a
    plain byte search would not (it is the fallback for the other formats)."""
    lookalike = "\x00\x00\x00\x40jumb\x00\x00\x00\x18jumdc2pa"
    data = (png_with_text(picture(), Comment=lookalike) if fmt == "PNG"
            else encode(picture(), "WEBP", xmp=lookalike.encode("latin-1")))
    assert provenance._find_c2pa_box(data)
    assert not has_c2pa_marker(data, fmt)
    assert decode_with_metadata(data).metadata.c2pa_box is None


def test_c2pa_reading_can_be_switched_off(signing_chain):
    data = c2pa_signed(picture(), "PNG", IPTC + "trainedAlgorithmicMedia", signing_chain)
    assert signals_of(data, c2pa=False) == []


def test_tampered_c2pa_file_is_not_verified_but_still_declares(signing_chain):
    data = bytearray(c2pa_signed(picture(), "JPEG", IPTC + "trainedAlgorithmicMedia", signing_chain))
    i = len(data) - 64  # in the entropy-coded pixels, away from any 0xFF marker byte
    while 0xFF in data[i - 1:i + 1] or data[i] ^ 1 == 0xFF:
        i -= 1
    data[i] ^= 1  # one bit of one pixel block: still a decodable JPEG
    signals = signals_of(bytes(data))
    assert signals[0].signal == "c2pa.digital_source_type"
    assert (signals[0].declares_ai, signals[0].verified, signals[0].signature) == (True, False, "Invalid")


def test_c2pa_capture_claim_is_reported_not_declared(signing_chain):
    (dst, gen) = signals_of(c2pa_signed(picture(), "JPEG", IPTC + "digitalCapture", signing_chain))
    assert (dst.declares_ai, dst.verified) == (False, True) and not declares_ai([dst, gen])


def test_c2pa_claim_generator_naming_a_generator_declares(signing_chain):
    signals = signals_of(c2pa_signed(picture(), "JPEG", IPTC + "digitalCreation", signing_chain,
                                     generator="Adobe Firefly"))
    assert [(s.signal, s.declares_ai) for s in signals] == [("c2pa.digital_source_type", False),
                                                            ("c2pa.claim_generator", True)]


def test_a_broken_c2pa_store_is_a_signal_not_a_crash():
    # A JPEG whose APP11 segment has the C2PA box's header and nothing valid after it.
    jpeg = encode(picture(), "JPEG")
    junk = b"JP\x00\x01\x00\x00\x00\x01" + b"\x00\x00\x00\x40jumb\x00\x00\x00\x18jumdc2pa" + b"\x00" * 40
    broken = jpeg[:2] + b"\xff\xeb" + (len(junk) + 2).to_bytes(2, "big") + junk + jpeg[2:]
    (s,) = signals_of(broken)
    assert (s.signal, s.declares_ai, s.verified) == ("c2pa.unreadable", False, False)


# ----------------------------------------------------------------------------- verdicts


def test_declared_ai_file_with_human_looking_pixels_is_flagged_with_its_reason(detector):
    black = solid("black", (32, 32))  # the tiny model's most human-looking input
    clean, declared = detector.predict([encode(black, "PNG"), png_with_text(black, parameters=A1111)])
    assert clean.label == "human" and clean.evidence["provenance"] == []
    assert clean.evidence["label_reason"] == "model-score"
    assert declared.label == "ai-mimicry"
    assert declared.score == pytest.approx(clean.score)  # the score stays the model's
    assert declared.evidence["label_reason"] == DECLARED_AI
    assert declared.evidence["model_label"] == "human"
    assert declared.evidence["provenance"][0]["signal"] == "png.a1111_parameters"
    json.dumps(declared.to_dict())  # the evidence is JSON-ready


def test_a_forged_human_claim_never_lowers_a_score_or_clears_a_label(detector, signing_chain):
    white = solid("white", (32, 32))  # flagged by the tiny model
    grey = solid((128, 128, 128), (32, 32))  # uncertain
    for image, label in ((white, "ai-mimicry"), (grey, "uncertain")):
        clean = detector.predict(encode(image, "PNG"))[0]
        claims = [with_xmp(image, "PNG", xmp_packet(IPTC + "digitalCapture")),
                  c2pa_signed(image, "PNG", IPTC + "digitalCapture", signing_chain),
                  with_exif(image, "JPEG", {0x010E: "Drawn by hand, no Midjourney involved"})]
        for v in detector.predict(claims):
            assert v.label == label and v.evidence["label_reason"] == "model-score"
            assert v.score >= clean.score - 0.02  # JPEG re-encoding moves the pixels a little, nothing else
            assert v.evidence["provenance"] and not declares_ai(v.evidence["provenance"])


def test_service_path_load_then_verdict_matches_predict(detector):
    data = png_with_text(solid("black", (32, 32)), Software="NovelAI")
    loaded = detector.load(data)
    logit = float(detector.predict_arrays(loaded.x[None])[0])
    v = detector.verdict("<upload>", logit, loaded.provenance)
    assert (v.label, v.evidence["label_reason"]) == ("ai-mimicry", DECLARED_AI)
    assert v.to_dict() | {"source": None} == detector.predict(data)[0].to_dict() | {"source": None}
    assert "provenance" not in detector.verdict("<upload>", logit).evidence  # not read: not claimed


def test_a_detector_can_leave_provenance_unread(model_dir):
    from mimicry.detector.detector import Detector

    det = Detector.from_dir(model_dir, intra_op_threads=1, provenance=False)
    v = det.predict(png_with_text(solid("black", (32, 32)), parameters=A1111))[0]
    assert v.label == "human" and "provenance" not in v.evidence


def test_the_bundled_model_flags_a_real_work_that_declares_itself_ai(tmp_path):
    """With the real detector: a real artist's work it calls human, re-saved with A1111 parameters."""
    from pathlib import Path

    from mimicry.detector.detector import Detector

    root = Path(__file__).resolve().parents[2]
    det = Detector.from_dir(root / "models" / "default", intra_op_threads=1)
    real = sorted((root / "examples").glob("real_*.png"))[0]
    with Image.open(real) as im:
        declared = png_with_text(im.convert("RGB"), parameters=A1111)
    before, after = det.predict([real, declared])
    assert before.label == "human" and before.evidence["provenance"] == []
    assert after.label == "ai-mimicry" and after.evidence["label_reason"] == DECLARED_AI
    assert after.score == pytest.approx(before.score, abs=1e-4)


def test_a_threaded_scan_reads_each_files_own_signals(detector, signing_chain, tmp_path):
    """What `mimicry scan` runs: decode threads, C2PA files among plain ones, rows in input order."""
    files = {"plain.jpg": encode(picture(1), "JPEG"),
             "c2pa.jpg": c2pa_signed(picture(2), "JPEG", IPTC + "trainedAlgorithmicMedia", signing_chain),
             "a1111.png": png_with_text(picture(3), parameters=A1111),
             "c2pa.webp": c2pa_signed(picture(4), "WEBP", IPTC + "digitalCapture", signing_chain),
             "broken.png": b"\x89PNG\r\n\x1a\n broken"}
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    verdicts = list(detector.stream(paths * 3, batch_size=2, workers=2))
    got = [[s["signal"] for s in v.evidence.get("provenance", [])] for v in verdicts]
    assert got == [[], ["c2pa.digital_source_type", "c2pa.claim_generator"], ["png.a1111_parameters"],
                   ["c2pa.digital_source_type", "c2pa.claim_generator"], []] * 3
    assert [v.error_code for v in verdicts[:5]] == [None, None, None, None, "corrupt"]
    # Random pixels are "uncertain" for the tiny model; the declarations, and only they, flag.
    assert [v.evidence["model_label"] for v in verdicts[:4]] == ["uncertain"] * 4
    assert [v.label for v in verdicts[:4]] == ["uncertain", "ai-mimicry", "ai-mimicry", "uncertain"]
    assert [v.evidence["label_reason"] for v in verdicts[:4]] == ["model-score", DECLARED_AI, DECLARED_AI,
                                                                  "model-score"]
