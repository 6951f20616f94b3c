"""Generation from a DreamBooth run: images, provenance rows, resume."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from mimicry.training import dreambooth
from mimicry.training.generate import (COMPOSITIONS, SUBJECTS, generate, prompt_bank, prompt_offset, read_manifest,
                                       run_prompt_offset)

PROVENANCE = ("artist", "run_id", "base_model", "method", "prompt", "negative_prompt", "seed", "steps", "guidance",
              "scheduler", "sha256")


@pytest.fixture(scope="module")
def lora_run(tiny_base, artist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "run"
    dreambooth.main(dreambooth.parse_args([
        "--base", str(tiny_base), "--instance-dir", str(artist_dir), "--out", str(out), "--max-steps", "2",
        "--resolution", "32", "--batch-size", "1", "--lora", "--artist", "Test Artist"]))
    return out


def test_prompt_bank_crosses_subjects_and_compositions():
    bank = prompt_bank()
    assert len(bank) == len(set(bank)) == len(SUBJECTS) * len(COMPOSITIONS)
    assert all(p.startswith("sks style, ") for p in bank)
    # Consecutive prompts differ in subject: a short run still covers many subjects.
    assert len({p.split(",")[1] for p in bank[: len(SUBJECTS)]}) == len(SUBJECTS)


def test_generate_writes_images_and_provenance_then_fills_only_the_shortfall(lora_run, tmp_path):
    rows = generate(lora_run, tmp_path, 3, steps=2, batch_size=2, scheduler="ddim")
    assert [r["index"] for r in rows] == [0, 1, 2]
    manifest = read_manifest(tmp_path / "generated_manifest.jsonl")
    assert manifest == rows
    record = json.loads((lora_run / "run.json").read_text())
    for r in rows:
        assert all(r.get(k) not in (None, "") for k in PROVENANCE)
        assert r["run_id"] == record["run_id"] and r["method"] == "lora" and r["artist"] == "Test Artist"
        assert r["label"] == "ai-mimicry" and r["scheduler"] == "DDIMScheduler"
        data = (tmp_path / r["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        with Image.open(tmp_path / r["path"]) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (32, 32))
    assert len({r["seed"] for r in rows}) == 3 and len({r["prompt"] for r in rows}) == 3

    more = generate(lora_run, tmp_path, 5, steps=2, batch_size=2, scheduler="ddim")
    assert [r["index"] for r in more] == [3, 4]
    assert generate(lora_run, tmp_path, 5, steps=2, scheduler="ddim") == []
    assert len(read_manifest(tmp_path / "generated_manifest.jsonl")) == 5


def test_same_seed_and_prompt_reproduce_the_image(lora_run, tmp_path):
    a = generate(lora_run, tmp_path / "a", 2, steps=2, scheduler="ddim")
    b = generate(lora_run, tmp_path / "b", 2, steps=2, scheduler="ddim")
    assert [r["sha256"] for r in a] == [r["sha256"] for r in b]


@pytest.fixture(scope="module")
def other_run(tiny_base, artist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen2") / "run"
    dreambooth.main(dreambooth.parse_args([
        "--base", str(tiny_base), "--instance-dir", str(artist_dir), "--out", str(out), "--max-steps", "3",
        "--resolution", "32", "--batch-size", "1", "--lora", "--artist", "Other Artist"]))
    return out


def test_a_new_run_steps_past_the_prompt_offsets_a_manifest_already_holds():
    bank = prompt_bank()
    n = len(bank)
    own = prompt_offset("B", n)
    assert run_prompt_offset("B", bank, []) == own
    # Another run entered the bank where B's digest points (as digests modulo a small bank often do): B steps past.
    rows = [{"run_id": "A", "index": 2, "prompt": bank[(own + 2) % n]}]
    assert run_prompt_offset("B", bank, rows) == (own + 1) % n
    # A run that has rows keeps the offset they were made with, whatever the digest says.
    resumed = rows + [{"run_id": "B", "index": 3, "prompt": bank[(own + 5 + 3) % n]}]
    assert run_prompt_offset("B", bank, resumed) == (own + 5) % n
    # Rows of another template say nothing; with every offset taken the digest's offset is all that is left.
    assert run_prompt_offset("B", bank, [{"run_id": "A", "index": 0, "prompt": "a prompt of another bank"}]) == own
    full = [{"run_id": f"r{k}", "index": 0, "prompt": bank[k]} for k in range(n)]
    assert run_prompt_offset("B", bank, full) == own


def test_two_runs_never_share_seeds_or_prompt_order(lora_run, other_run, tmp_path):
    a = generate(lora_run, tmp_path, 4, steps=2)
    b = generate(other_run, tmp_path, 4, steps=2)
    assert a[0]["run_id"] != b[0]["run_id"]
    assert not {r["seed"] for r in a} & {r["seed"] for r in b}
    assert [r["prompt"] for r in a] != [r["prompt"] for r in b]
    assert len({r["path"] for r in a + b}) == 8


def test_other_sampling_settings_make_another_set(lora_run, tmp_path):
    base = generate(lora_run, tmp_path, 2, steps=2, scheduler="ddim")
    for kwargs in ({"steps": 3, "scheduler": "ddim"}, {"steps": 2, "scheduler": "euler"},
                   {"steps": 2, "scheduler": "ddim", "guidance": 7.5}, {"steps": 2, "scheduler": "ddim", "size": 24}):
        other = generate(lora_run, tmp_path, 2, **kwargs)
        assert [r["index"] for r in other] == [0, 1], kwargs  # not skipped as already made
        assert {r["generation_id"] for r in other}.isdisjoint({r["generation_id"] for r in base})
    assert generate(lora_run, tmp_path, 2, steps=2, scheduler="ddim", size=24) == []
    rows = read_manifest(tmp_path / "generated_manifest.jsonl")
    assert len(rows) == 10 and len({r["path"] for r in rows}) == 10
    with Image.open(tmp_path / rows[-1]["path"]) as im:
        assert im.size == (24, 24)


def test_generate_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a DreamBooth run"):
        generate(tmp_path, tmp_path / "out", 2)
