"""The one-command dataset build, end to end on tiny data: corpus rows, DreamBooth, generation, splits."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from mimicry.training import build_dataset
from mimicry.training.corpus import encode_png, normalize_artwork, sha256_bytes
from mimicry.training.generate import read_manifest


@pytest.fixture()
def tiny_corpus(tmp_path):
    """Three artists x 4 normalised works, laid out as training.corpus writes them."""
    out = tmp_path / "demo"
    rng = np.random.default_rng(3)
    rows = []
    for a, artist in enumerate(["Ann", "Bob", "Cy"]):
        folder = out / "real" / artist.lower()
        folder.mkdir(parents=True)
        for i in range(4):
            data = encode_png(normalize_artwork(Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)), 32))
            (folder / f"w{i}.png").write_bytes(data)
            rows.append({"path": f"real/{artist.lower()}/w{i}.png", "label": "human", "artist": artist,
                         "caption": "clip art of a cat", "sha256": sha256_bytes(data)})
    with open(out / "real_manifest.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return out


def build(tiny_base, out, *extra):
    return build_dataset.main(["--base", str(tiny_base), "--out", str(out), "--runs", str(out.parent / "runs"),
                               "--class-dir", str(out.parent / "class"), "--artists", "Ann", "Bob", "Cy",
                               "--min-works", "4", "--resolution", "32", "--db-steps", "2", "--db-batch-size", "1",
                               "--num-class-images", "2", "--gen-steps", "2", *extra])


def test_build_dataset_end_to_end_with_artist_splits(tiny_base, tiny_corpus):
    assert build(tiny_base, tiny_corpus, "--methods", "full", "lora") == 0
    rows = read_manifest(tiny_corpus / "manifest.jsonl")
    labels = Counter((r["artist"], r["label"]) for r in rows)
    # As many mimicry images as real works per artist, shared between the two methods.
    assert all(labels[(a, "human")] == 4 and labels[(a, "ai-mimicry")] == 4 for a in ("Ann", "Bob", "Cy"))
    assert Counter(r["method"] for r in rows if r["label"] == "ai-mimicry") == {"full": 6, "lora": 6}
    # No artist and no generation run is in two splits.
    for key in ("artist", "run_id"):
        splits_of = {}
        for r in rows:
            splits_of.setdefault(r[key], set()).add(r["split"])
        assert all(len(s) == 1 for k, s in splits_of.items() if k is not None), key
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for r in rows:
        assert (tiny_corpus / r["path"]).is_file() and r["sha256"]
    summary = json.loads((tiny_corpus / "dataset.json").read_text())
    assert summary["rows"] == 24 and summary["shares_generation_runs_across_splits"] is False

    # A re-run finds everything done: no new DreamBooth step, no new image.
    before = (tiny_corpus / "generated_manifest.jsonl").read_text()
    assert build(tiny_base, tiny_corpus, "--methods", "full", "lora") == 0
    assert (tiny_corpus / "generated_manifest.jsonl").read_text() == before

    # Fewer methods: each full run now owes all 4 images; the lora images and nothing else drop out.
    assert build(tiny_base, tiny_corpus, "--methods", "full") == 0
    rows = read_manifest(tiny_corpus / "manifest.jsonl")
    mimicry = [r for r in rows if r["label"] == "ai-mimicry"]
    assert Counter(r["method"] for r in mimicry) == {"full": 12}
    assert all(sorted(r["index"] for r in mimicry if r["artist"] == a) == [0, 1, 2, 3] for a in ("Ann", "Bob", "Cy"))
    # Other sampling settings: a new set of images, not the old ones relabelled.
    assert build(tiny_base, tiny_corpus, "--methods", "full", "--guidance", "3.0") == 0
    again = [r for r in read_manifest(tiny_corpus / "manifest.jsonl") if r["label"] == "ai-mimicry"]
    assert len(again) == 12 and {r["guidance"] for r in again} == {3.0}
    assert not {r["path"] for r in again} & {r["path"] for r in mimicry}


def test_split_assignment():
    splits = build_dataset.assign_artist_splits(["a", "b", "c", "d"], None, None)
    assert sorted(splits.values()) == ["test", "train", "train", "val"]
    assert build_dataset.assign_artist_splits(["a", "b", "c"], ["b"], ["a"]) == {"a": "test", "b": "val", "c": "train"}
    with pytest.raises(ValueError, match="both"):
        build_dataset.assign_artist_splits(["a", "b", "c"], ["a"], ["a"])
    with pytest.raises(ValueError, match="train"):
        build_dataset.assign_artist_splits(["a", "b"], ["a"], ["b"])
    assert {build_dataset.hash_split(str(i)) for i in range(200)} == {"train", "val", "test"}
