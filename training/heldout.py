"""Build the held-out evaluation sets: artists and generator settings the detector never trained on.

The dataset's own test split holds one artist's works and mimicry from one generator recipe (full
DreamBooth, DPM-Solver++, 25 steps, guidance 5). A detector can look perfect there and still fail on
what it has not seen. This command adds, beside the dataset and never in any training split:

* **Unseen artists**: ``--extra-artists`` more openclipart authors (default: chosen by style distance
  among authors with enough works, outside the demo artists), each with their real works and mimicry
  from a full DreamBooth run made with the dataset's recipe. They are unseen by the detector, but the
  tiny base model was trained on all openclipart authors outside the demo six, so these styles are
  not new to the generator: the report says so.
* **Unseen generator settings** for the test artist(s): a LoRA DreamBooth run; the dataset's full run
  sampled with another scheduler, with more steps and a higher guidance, and with fewer steps and a
  lower guidance; and a full DreamBooth run with another training seed. Another seed of the *base*
  model would mean retraining the tiny base (about 80 CPU minutes) and is not built here.

Rows go to ``<dataset>/heldout_manifest.jsonl`` (paths relative to the dataset folder) with a
``condition`` column (``default`` for the dataset's recipe) and a ``heldout_reason``. Resumable: runs
and images already made are skipped.

``python -m mimicry.training.heldout --dataset data/demo --base models/tiny-sd-clipart``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mimicry.training import dreambooth
from mimicry.training.build_dataset import write_instance_captions
from mimicry.training.corpus import DEMO_ARTISTS, NOT_ILLUSTRATION, build_corpus, choose_artists, scan_catalogue, slugify
from mimicry.training.generate import DEFAULT_NEGATIVE, DEFAULT_TEMPLATE, generate, generation_id, read_manifest

# Sampling variants of the dataset's full run: (condition name, scheduler, steps, guidance).
SAMPLING_VARIANTS = (
    ("sampler euler_a", "euler_a", 25, 5.0),
    ("steps 50, guidance 7.5", "dpm++", 50, 7.5),
    ("ddim, steps 15, guidance 3", "ddim", 15, 3.0),
)
# Authors whose works are not illustrations in any useful sense (see training.corpus).
NOT_ARTISTS = set(NOT_ILLUSTRATION) | {"Alan Horkan"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=Path("data/demo"), help="a training.build_dataset folder")
    p.add_argument("--base", type=Path, default=Path("models/tiny-sd-clipart"))
    p.add_argument("--runs", type=Path, default=Path("runs/dreambooth-heldout"))
    p.add_argument("--extra-artists", nargs="*", default=None,
                   help="unseen artists to add; default: --n-extra chosen by style distance")
    p.add_argument("--n-extra", type=int, default=3)
    p.add_argument("--n", type=int, default=40, help="mimicry images per held-out set")
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def dataset_settings(dataset: Path) -> dict:
    summary = json.loads((dataset / "dataset.json").read_text())
    return summary["settings"] | {"artists_by_split": summary["artists_by_split"]}


def dreambooth_run(s: dict, base: Path, instance: Path, out: Path, artist: str, *, lora: bool = False,
                   seed: int | None = None, device: str = "auto") -> Path:
    """A DreamBooth run with the dataset's recipe (or its LoRA recipe), skipped when already done."""
    record = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    if record.get("status") == "done":
        return out
    argv = ["--base", str(base), "--instance-dir", str(instance), "--out", str(out), "--artist", artist,
            "--with-prior-preservation", "--class-dir", s["class_dir"], "--num-class-images",
            str(s["num_class_images"]), "--max-steps", str(s["db_steps"]), "--batch-size", str(s["db_batch_size"]),
            "--resolution", str(s["resolution"]), "--seed", str(s["seed"] if seed is None else seed),
            "--checkpoint-every", "100", "--device", device,
            "--learning-rate", str(s["db_lr_lora"] if lora else s["db_lr_full"])]
    if lora:
        argv.append("--lora")
    print(f"DreamBooth ({'lora' if lora else 'full'}, seed {seed if seed is not None else s['seed']}) "
          f"for {artist} ...", file=sys.stderr, flush=True)
    dreambooth.main(dreambooth.parse_args(argv))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    s = dataset_settings(args.dataset)
    base = args.base
    gen_manifest = args.dataset / "heldout_generated.jsonl"
    default_sampling = {"steps": s["gen_steps"], "guidance": s["guidance"], "scheduler": s["scheduler"]}
    rows: list[dict] = []

    def add_mimicry(run_dir: Path, condition: str, reason: str, **sampling) -> None:
        sampling = default_sampling | sampling
        generate(run_dir, args.dataset, args.n, manifest=gen_manifest, seed=s["seed"], size=s["resolution"],
                 device=args.device, **sampling)
        run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
        gid = generation_id(size=s["resolution"], seed=s["seed"], template=DEFAULT_TEMPLATE,
                            negative_prompt=DEFAULT_NEGATIVE, **sampling)
        mine = [r for r in read_manifest(gen_manifest)
                if r["run_id"] == run_id and r["generation_id"] == gid and r["index"] < args.n]
        rows.extend({**r, "condition": condition, "heldout_reason": reason} for r in mine)
        print(f"  {condition} ({mine[0]['artist'] if mine else '?'}): {len(mine)} images", file=sys.stderr, flush=True)

    # Unseen generator settings, for the dataset's test artist(s).
    for artist in s["artists_by_split"]["test"]:
        slug = slugify(artist)
        full = Path(s["runs"]) / f"{slug}-full"
        for name, scheduler, steps, guidance in SAMPLING_VARIANTS:
            add_mimicry(full, name, "test artist, sampling settings not used in the dataset",
                        scheduler=scheduler, steps=steps, guidance=guidance)
        lora = dreambooth_run(s, base, args.dataset / "real" / slug, args.runs / f"{slug}-lora", artist, lora=True,
                              device=args.device)
        add_mimicry(lora, "LoRA", "test artist, LoRA DreamBooth (the dataset holds full fine-tunes only)")
        seed1 = dreambooth_run(s, base, args.dataset / "real" / slug, args.runs / f"{slug}-full-seed1", artist,
                               seed=int(s["seed"]) + 1, device=args.device)
        add_mimicry(seed1, "DreamBooth seed +1",
                    "test artist, full DreamBooth with another training seed (not another base model)")

    # Unseen artists: real works and default-recipe mimicry.
    works, _ = scan_catalogue()
    extra = args.extra_artists
    if extra is None:
        taken = set(DEMO_ARTISTS) | NOT_ARTISTS
        extra = choose_artists(works, args.n_extra, s["min_works"], exclude=taken)
    real_rows = build_corpus(args.dataset / "heldout", extra, works, s["resolution"], s["max_works"])
    write_instance_captions(real_rows, args.dataset / "heldout")
    for artist in extra:
        slug = slugify(artist)
        mine = [r for r in real_rows if r["artist"] == artist]
        if len(mine) < s["min_works"]:
            raise SystemExit(f"error: {artist} has {len(mine)} usable works, fewer than {s['min_works']}")
        rows.extend({**r, "path": f"heldout/{r['path']}", "condition": "default",
                     "heldout_reason": "artist unseen by the detector (seen by the tiny base)"} for r in mine)
        run = dreambooth_run(s, base, args.dataset / "heldout" / "real" / slug, args.runs / f"{slug}-full", artist,
                             device=args.device)
        add_mimicry(run, "default", "artist unseen by the detector (seen by the tiny base)")

    with open(args.dataset / "heldout_manifest.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"split": "heldout", **r}) + "\n")
    summary = {"rows": len(rows), "extra_artists": extra, "test_artists": s["artists_by_split"]["test"],
               "conditions": sorted({r["condition"] for r in rows}), "seconds": round(time.time() - t0, 1)}
    (args.dataset / "heldout.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
