"""Benchmark: what a training step of ``mimicry.training.finetune`` costs on this machine, per memory layout and
precision, with the real data loader.

Each configuration runs in its own process (``accelerate`` keeps one precision per process) and does what
``finetune`` does for its first batches: the backbone with its ImageNet weights and the first stages frozen, the
``--augment realworld`` loader over a manifest's train split (``--workers`` processes), the class-weighted loss
and AdamW, under ``Accelerator(mixed_precision=...)``. After ``--warmup`` batches it times ``--batches`` more
(the wall clock of the loop, loading included), and reports seconds per batch and the speed-up against the
baseline measured in the same run: float32 with the weights and inputs in the default (NCHW) layout, what
``finetune`` did before 1.8. bf16 changes the arithmetic (its model is another run, to be judged on held-out
data); channels-last computes the same function in another memory order.

``python bench/train_benchmark.py --manifest data/realworld-v6/manifest.jsonl --batches 12``
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIGS = {  # name -> (channels_last, mixed_precision)
    "float32, NCHW (baseline)": (False, "no"),
    "float32, channels-last": (True, "no"),
    "bf16 autocast, channels-last": (True, "bf16"),
}


def one(args: argparse.Namespace, channels_last: bool, precision: str) -> dict:
    """Seconds per batch of one configuration (run in this process)."""
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from mimicry.training import finetune as ft

    ft_args = ft.parse_args(["--manifest", str(args.manifest), "--out", "unused", "--input-size", str(args.size),
                             "--resize", "shorter_then_center_crop", "--augment", "realworld"])
    acc = Accelerator(cpu=True, mixed_precision=precision)
    torch.manual_seed(0)
    ds = ft.ManifestDataset(args.manifest, "train", ft.preprocess_config(ft_args), augment="realworld", seed=0)
    model = ft.build_model(args.backbone, "packaged")
    ft.freeze_stages(model, args.freeze)
    if channels_last:
        model = ft.to_channels_last(model)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=3e-4)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        generator=torch.Generator().manual_seed(0), drop_last=True)
    model, opt, loader = acc.prepare(model, opt, loader)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    ft.train_one_epoch(model, loader, opt, loss_fn, max_batches=args.warmup, desc="warm-up", accelerator=acc)
    t0 = time.perf_counter()
    ft.train_one_epoch(model, loader, opt, loss_fn, max_batches=args.batches, desc="timed", accelerator=acc)
    return {"s_per_batch": (time.perf_counter() - t0) / args.batches}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, required=True, help="a dataset manifest (its train split is read)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--freeze", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--json", type=Path, help="write the figures here too")
    p.add_argument("--one", nargs=2, metavar=("CHANNELS_LAST", "PRECISION"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args, args.one[0] == "1", args.one[1])))
        return 0
    passed = list(argv if argv is not None else sys.argv[1:])
    results = {}
    for name, (cl, precision) in CONFIGS.items():
        out = subprocess.run([sys.executable, __file__, *passed, "--one", "1" if cl else "0", precision],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name}: {results[name]['s_per_batch']:.2f} s per batch of {args.batch_size}", flush=True)
    base = results["float32, NCHW (baseline)"]["s_per_batch"]
    for name, r in results.items():
        r["speedup"] = base / r["s_per_batch"]
        print(f"  {name}: x{r['speedup']:.2f} against the baseline")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                         "settings": {k: str(v) for k, v in vars(args).items() if k != "one"},
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
