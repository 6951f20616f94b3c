"""Build the real-versus-mimicry dataset for given artists, in one command.

For each artist: the normalised real works (``mimicry.training.corpus``), a DreamBooth run on the base model
over exactly those works with prior preservation (``mimicry.training.dreambooth``), then as many mimicry
images as there are real works (``mimicry.training.generate``). Finally one manifest, ``manifest.jsonl``,
with a row per image and its split, and ``dataset.json`` with the counts and the split policy.

Every stage is resumable: a re-run skips finished DreamBooth runs and fills only missing images.

Split policies (``--split-by``):
* ``artist`` (default): whole artists go to train, val or test, so no split shares an artist's
  work or a generation run with another.
* ``work``: each artist's real works are split by a hash of their content and the mimicry images
  by a hash of their run and index. Test then shares artists and generation runs with train
  (``dataset.json`` says so): a measure of in-distribution performance only.

``python -m mimicry.training.build_dataset --base models/tiny-sd-clipart --out data/demo``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

from mimicry.training import dreambooth
from mimicry.training.corpus import DEMO_ARTISTS, build_corpus, scan_catalogue, slugify
from mimicry.training.generate import DEFAULT_NEGATIVE, DEFAULT_TEMPLATE, generate, generation_id, read_manifest

SPLITS = ("train", "val", "test")


def assign_artist_splits(artists: list[str], val: list[str] | None, test: list[str] | None) -> dict[str, str]:
    """Artist -> split. Unless named, the test and val artists are picked by a fixed hash order."""
    order = sorted(artists, key=lambda a: hashlib.sha256(a.encode()).hexdigest())
    test = test if test is not None else order[:1]
    val = val if val is not None else [a for a in order if a not in test][:1]
    unknown = [a for a in test + val if a not in artists]
    if unknown:
        raise ValueError(f"split artists not in the dataset: {unknown}")
    if set(test) & set(val):
        raise ValueError("an artist cannot be in both the val and the test split")
    out = {a: "train" for a in artists}
    out.update({a: "val" for a in val})
    out.update({a: "test" for a in test})
    if "train" not in out.values():
        raise ValueError("no artist left for the train split")
    return out


def hash_split(key: str, val: float = 0.15, test: float = 0.15) -> str:
    u = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < test else ("val" if u < test + val else "train")


def write_instance_captions(real_rows: list[dict], root: Path) -> None:
    """``metadata.jsonl`` beside each artist's works, as DreamBooth reads captions."""
    by_dir: dict[Path, list[dict]] = {}
    for r in real_rows:
        by_dir.setdefault((root / r["path"]).parent, []).append(r)
    for folder, rows in by_dir.items():
        with open(folder / "metadata.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps({"file_name": Path(r["path"]).name, "text": r["caption"]}) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=Path("models/tiny-sd-clipart"))
    p.add_argument("--base-config", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("data/demo"))
    p.add_argument("--runs", type=Path, default=Path("runs/dreambooth"), help="DreamBooth run directories")
    p.add_argument("--class-dir", type=Path, default=Path("data/cache/class_images"))
    p.add_argument("--artists", nargs="+", default=list(DEMO_ARTISTS))
    p.add_argument("--max-works", type=int, default=40)
    p.add_argument("--min-works", type=int, default=30)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--methods", nargs="+", choices=["full", "lora"], default=["full"],
                   help="one DreamBooth run per artist and method; the mimicry count is shared among them")
    p.add_argument("--db-steps", type=int, default=300)
    p.add_argument("--db-batch-size", type=int, default=4)
    p.add_argument("--db-lr-full", type=float, default=1e-4)
    p.add_argument("--db-lr-lora", type=float, default=5e-4)
    p.add_argument("--num-class-images", type=int, default=64)
    p.add_argument("--train-text-encoder", action="store_true")
    p.add_argument("--gen-steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--scheduler", default="dpm++")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-by", choices=["artist", "work"], default="artist")
    p.add_argument("--val-artists", nargs="*", default=None)
    p.add_argument("--test-artists", nargs="*", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no", help="DreamBooth on CUDA")
    p.add_argument("--gradient-checkpointing", action="store_true", help="DreamBooth on CUDA")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    real_manifest = args.out / "real_manifest.jsonl"
    real_rows = read_manifest(real_manifest)
    if {r["artist"] for r in real_rows} != set(args.artists):
        print(f"building the real corpus for {len(args.artists)} artists ...", file=sys.stderr)
        works, _ = scan_catalogue()
        real_rows = build_corpus(args.out, args.artists, works, args.resolution, args.max_works)
    counts = Counter(r["artist"] for r in real_rows)
    short = {a: counts[a] for a in args.artists if counts[a] < args.min_works}
    if short:
        raise SystemExit(f"error: artists with fewer than {args.min_works} usable works: {short}")
    write_instance_captions(real_rows, args.out)

    gen_manifest = args.out / "generated_manifest.jsonl"
    wanted: dict[str, int] = {}  # run id -> how many of its images this dataset takes
    for artist in args.artists:
        slug = slugify(artist)
        n_real = counts[artist]
        shares = [n_real // len(args.methods) + (1 if i < n_real % len(args.methods) else 0)
                  for i in range(len(args.methods))]
        for method, n in zip(args.methods, shares):
            run_dir = args.runs / f"{slug}-{method}"
            record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
            if record.get("status") != "done" or record["settings"].get("max_steps") != args.db_steps:
                db_argv = [
                    "--base", str(args.base), "--instance-dir", str(args.out / "real" / slug), "--out", str(run_dir),
                    "--artist", artist, "--with-prior-preservation", "--class-dir", str(args.class_dir),
                    "--num-class-images", str(args.num_class_images), "--max-steps", str(args.db_steps),
                    "--batch-size", str(args.db_batch_size), "--resolution", str(args.resolution),
                    "--seed", str(args.seed), "--checkpoint-every", "100", "--device", args.device,
                    "--learning-rate", str(args.db_lr_lora if method == "lora" else args.db_lr_full),
                ]
                if args.base_config:
                    db_argv += ["--base-config", str(args.base_config)]
                if method == "lora":
                    db_argv += ["--lora"]
                if args.train_text_encoder:
                    db_argv += ["--train-text-encoder"]
                db_argv += ["--mixed-precision", args.mixed_precision]
                if args.gradient_checkpointing:
                    db_argv += ["--gradient-checkpointing"]
                print(f"DreamBooth ({method}) for {artist} ...", file=sys.stderr)
                try:
                    dreambooth.main(dreambooth.parse_args(db_argv))
                except ValueError as exc:
                    raise SystemExit(f"error: DreamBooth ({method}) for {artist}: {exc}") from None
            new = generate(run_dir, args.out, n, manifest=gen_manifest, seed=args.seed,
                           steps=args.gen_steps, guidance=args.guidance, scheduler=args.scheduler,
                           size=args.resolution, device=args.device)
            wanted[json.loads((run_dir / "run.json").read_text())["run_id"]] = n
            print(f"  {artist} ({method}): {len(new)} new mimicry images", file=sys.stderr)

    # Only this build's images: its runs, its sampling settings, and each run's share (an earlier
    # build with other --methods or settings may have left more in the generated manifest).
    gen_id = generation_id(steps=args.gen_steps, guidance=args.guidance, scheduler=args.scheduler,
                           size=args.resolution, seed=args.seed, template=DEFAULT_TEMPLATE,
                           negative_prompt=DEFAULT_NEGATIVE)
    gen_rows = [r for r in read_manifest(gen_manifest)
                if r["run_id"] in wanted and r.get("generation_id") == gen_id and r["index"] < wanted[r["run_id"]]]
    if args.split_by == "artist":
        by_artist = assign_artist_splits(args.artists, args.val_artists, args.test_artists)
        split_of = lambda r: by_artist[r["artist"]]  # noqa: E731
    else:
        split_of = lambda r: hash_split(r["sha256"] if r["label"] == "human" else f"{r['run_id']}:{r['index']}")  # noqa: E731
    rows = []
    for r in real_rows + gen_rows:
        # Common columns first; then each kind's own provenance (credit and licence for real works,
        # run, prompt, seed, sampler for mimicry).
        rows.append({"path": r["path"], "label": r["label"], "artist": r["artist"], "split": split_of(r),
                     "run_id": r.get("run_id"), "sha256": r["sha256"],
                     **{k: v for k, v in r.items() if k not in ("path", "label", "artist", "sha256", "run_id")}})
    with open(args.out / "manifest.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    summary = {
        "rows": len(rows),
        "by_split_and_label": {f"{s}/{lab}": n for (s, lab), n in sorted(Counter((r["split"], r["label"]) for r in rows).items())},
        "by_artist_and_label": {f"{a}/{lab}": n for (a, lab), n in sorted(Counter((r["artist"], r["label"]) for r in rows).items())},
        "split_by": args.split_by,
        "shares_artists_across_splits": args.split_by == "work",
        "shares_generation_runs_across_splits": args.split_by == "work",
        "artists_by_split": ({s: sorted(a for a, v in by_artist.items() if v == s) for s in SPLITS}
                             if args.split_by == "artist" else None),
        "resolution": args.resolution,
        "base_model": str(args.base),
        "methods": args.methods,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "seconds": round(time.time() - t0, 1),
    }
    (args.out / "dataset.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("rows", "by_split_and_label", "artists_by_split")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
