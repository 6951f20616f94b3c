"""The training scripts under ``accelerate launch``, for real, on the CPU.

One process must train exactly what ``python -m`` trains (the launcher changes nothing); two
processes (gloo DDP on the CPU) must finish and write one set of outputs, from the main process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from test_dreambooth import run_args as db_args
from test_finetune_export import make_dataset

from mimicry.training import dreambooth, finetune

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).with_name("accelerate")


def launch(tmp_path: Path, processes: int, module: str, args: list[str]) -> subprocess.CompletedProcess:
    """``accelerate launch`` on the CPU with a config written here, so no user config is read.

    One process: ``--cpu``. Several: ``--multi_gpu`` (torchrun) with CUDA hidden, where the scripts'
    ``Accelerator(cpu=True)`` joins a gloo process group: DDP on the CPU. (Accelerate's ``--cpu``
    launcher starts several processes only through MPI.)
    """
    config = tmp_path / f"accelerate-{processes}.yaml"
    config.write_text(f"compute_environment: LOCAL_MACHINE\ndistributed_type: {'MULTI_GPU' if processes > 1 else 'NO'}\n"
                      f"mixed_precision: 'no'\nnum_machines: 1\nmachine_rank: 0\nnum_processes: {processes}\n"
                      f"use_cpu: {'false' if processes > 1 else 'true'}\ndynamo_config: {{}}\n")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    if processes > 1:
        with socket.socket() as s:  # a free port: other test runs may be rendezvousing on the default
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mode = ["--multi_gpu", "--main_process_port", str(port)]
        env["OMP_NUM_THREADS"] = "1"
    else:
        mode = ["--cpu", "--num_cpu_threads_per_process", str(torch.get_num_threads())]
    cmd = [str(ACCELERATE), "launch", "--config_file", str(config), *mode, "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", module, *args]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def summary_lines(stdout: str) -> list[dict]:
    return [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]


def ft_argv(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--out", str(out), "--epochs", "2", "--input-size", "48", "--batch-size", "4",
            "--workers", "0", "--lr", "1e-3", "--max-train-batches", "2", *extra]


def test_finetune_one_process_launch_trains_what_python_m_trains(tmp_path):
    manifest = make_dataset(tmp_path / "ds", n_per_class=4)
    plain = finetune.main(finetune.parse_args(ft_argv(manifest, tmp_path / "plain")))
    done = launch(tmp_path, 1, "mimicry.training.finetune", ft_argv(manifest, tmp_path / "launched"))

    assert summary_lines(done.stdout) == [{"out": str(tmp_path / "launched"), "epochs": 2,
                                           "best_val_loss": plain["best_val_loss"]}]
    launched = json.loads((tmp_path / "launched" / "history.json").read_text())
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in launched]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in plain["history"]]
    for name in ("model.safetensors", "last/model.safetensors"):
        a, b = load_file(str(tmp_path / "plain" / name)), load_file(str(tmp_path / "launched" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_finetune_two_processes_write_one_set_of_outputs(tmp_path):
    manifest = make_dataset(tmp_path / "ds", n_per_class=4)
    out = tmp_path / "run"
    done = launch(tmp_path, 2, "mimicry.training.finetune", ft_argv(manifest, out, "--threads", "1"))

    assert len(summary_lines(done.stdout)) == 1  # one summary: the main process's
    epoch_logs = [x for x in done.stderr.splitlines() if x.startswith('{"epoch"')]
    assert [json.loads(x)["epoch"] for x in epoch_logs] == [1, 2]  # logged once per epoch, not per process
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["val_loss"]) for h in history)
    assert json.loads((out / "last" / "state.json").read_text())["epoch"] == 2
    assert json.loads((out / "settings.json").read_text())["processes"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["history.json", "last", "model.safetensors", "settings.json"]
    weights = load_file(str(out / "model.safetensors"))
    assert not any(k.startswith("module.") for k in weights)  # saved from the unwrapped model
    model = finetune.build_model("tf_efficientnet_lite0", "none")
    model.load_state_dict(weights)


def test_dreambooth_one_process_launch_trains_what_python_m_trains(tiny_base, artist_dir, tmp_path):
    plain = dreambooth.main(dreambooth.parse_args(db_args(tiny_base, artist_dir, tmp_path / "plain", "--lora")))
    done = launch(tmp_path, 1, "mimicry.training.dreambooth", db_args(tiny_base, artist_dir, tmp_path / "launched", "--lora"))

    [summary] = summary_lines(done.stdout)
    assert summary["run_id"] == plain["run_id"] and summary["steps"] == 3
    losses = [json.loads((tmp_path / run / "checkpoint-000003" / "state.json").read_text())["losses"]
              for run in ("plain", "launched")]
    assert len(losses[0]) == 3 and np.allclose(losses[0], losses[1], rtol=1e-5, atol=0)
    assert (tmp_path / "launched" / "generator" / "pytorch_lora_weights.safetensors").is_file()


def test_dreambooth_two_processes_make_class_images_once_write_one_run_and_resume_exactly(tiny_base, artist_dir,
                                                                                          tmp_path):
    out, class_dir = tmp_path / "run", tmp_path / "class"
    argv = db_args(tiny_base, artist_dir, out, "--lora", "--with-prior-preservation", "--class-dir", str(class_dir))
    done = launch(tmp_path, 2, "mimicry.training.dreambooth", argv)

    assert len(summary_lines(done.stdout)) == 1
    # The main process made the class images; the other waited and made none.
    assert len(list(class_dir.glob("class_*.png"))) == 3
    assert len((class_dir / "metadata.jsonl").read_text().splitlines()) == 3
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done" and record["processes"] == 2 and record["class_images_generated"] == 3
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000002", "checkpoint-000003"]
    assert sorted(p.name for p in (out / "checkpoint-000002").glob("rng*.pt")) == ["rng-1.pt", "rng.pt"]
    assert (out / "generator" / "pytorch_lora_weights.safetensors").is_file()
    straight = json.loads((out / "checkpoint-000003" / "state.json").read_text())["losses"]
    assert len(straight) == 3 and np.isfinite(straight).all()

    # Interrupted after step 2: both processes resume their own RNG streams, so step 3 is the same.
    shutil.rmtree(out / "checkpoint-000003")
    shutil.rmtree(out / "generator")
    done = launch(tmp_path, 2, "mimicry.training.dreambooth", argv)
    assert "resuming" in done.stderr and "holds no RNG state" not in done.stderr
    assert json.loads((out / "checkpoint-000003" / "state.json").read_text())["losses"] == straight
    assert json.loads((out / "run.json").read_text())["class_images_generated"] == 0
