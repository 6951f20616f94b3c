"""``mimicry calibrate``: set a detector's threshold on your own human works, without training.

A shipped threshold holds at most 1% of the *validation* human works flagged, and a kind of human art that
was not among them can be flagged far more (docs/eval/realworld_notes.md measures it: up to 40% of a kind
left out of training). A platform knows what its users upload. Given folders of works it knows are human
(and, if it has them, AI images, whose share flagged is reported), this scores them exactly as ``mimicry
scan`` does, chooses the threshold by the export's own rule (:func:`mimicry.detector.calibration.choose_threshold`: at most ``--max-fpr`` of each
kind of those works flagged, clean and under the re-encodings named) and writes a new model directory: the
same ``model.onnx``, byte for byte, and a card whose thresholds say what they were set on.

Kinds: each first-level subfolder of a folder given is one kind of human art (its files at any depth); the
files directly in a folder given are a kind named after that folder; a file named on its own belongs to the
kind of its parent folder.

By default the new threshold is never below the model's own: human works of kinds absent from the ones given
would pay for a lower one. ``--allow-lower`` lets the platform's works decide alone.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mimicry.detector.scan import DEFAULT_WORKERS, iter_inputs
from mimicry.exits import EXIT_OK
from mimicry.scan_cli import messages

# mimicry.training.evaluate's perturbations that are not re-encodings a threshold is held under.
NOT_UNDER = ("clean", "purify_lanczos")


def under_names() -> tuple[str, ...]:
    """The re-encodings a threshold can be asked to hold under: mimicry.training.evaluate's names, as the
    export's --threshold-under takes them."""
    from mimicry.training.evaluate import PERTURBATIONS

    return tuple(n for n in PERTURBATIONS if n not in NOT_UNDER)


class CalibrateError(Exception):
    """A calibration that cannot be made, with the reason (exit code 2)."""


def kinds_of(paths: list[str], warn: Callable[[str], None] | None = None) -> Iterator[tuple[str, str]]:
    """(file, kind) for every image the paths give, folders walked at any depth (see the module's doc)."""
    for arg in paths:
        if os.path.isdir(arg):
            root = Path(arg)
            for f in iter_inputs([arg], recursive=True, warn=warn):
                rel = Path(f).relative_to(root)
                yield f, (rel.parts[0] if len(rel.parts) > 1 else root.resolve().name)
        else:
            for f in iter_inputs([arg], recursive=True, warn=warn):
                yield f, Path(f).resolve().parent.name


def score_files(detector, files: list[str], *, under: tuple[str, ...] = (), batch_size: int = 16,
                workers: int = 0) -> tuple[list[np.ndarray], list[int], list[tuple[str, str, str]]]:
    """Calibrated scores of ``files``: clean, then under each named re-encoding (applied to the file as
    given, decoded at full size). Returns (one array per condition, aligned; the indices of ``files`` that
    were scored; (file, error code, message) for each file that could not be read, which is left out)."""
    clean, kept, errors = [], [], []
    for i, v in enumerate(detector.stream(files, batch_size=batch_size, workers=workers)):
        if v.score is None:
            errors.append((files[i], v.error_code, v.error))
        else:
            clean.append(v.score)
            kept.append(i)
    scores = [np.array(clean, dtype=np.float64)]
    if under:
        from mimicry.detector.decode import DecodeError, decode_image
        from mimicry.training.evaluate import PERTURBATIONS as fns

        for name in under:
            fn = fns[name]

            def variants(fn=fn) -> Iterator:
                for i in kept:
                    try:
                        image = decode_image(files[i], max_bytes=detector.max_bytes, max_pixels=detector.max_pixels)
                    except DecodeError:  # changed on disk since it was scored: its clean score stands in
                        yield files[i]
                        continue
                    yield fn(image, i)

            # Decoded images, not files, wait in a batch here: a small one bounds the memory (a 40-MP image is 120 MB).
            got = [v.score for v in detector.stream(variants(), batch_size=min(batch_size, 4), workers=0)]
            # A re-encoded copy that cannot be scored (shrunk below the detector's minimum side, say) is held
            # at its clean score: it must not drop out of the bound.
            scores.append(np.array([g if g is not None else c for g, c in zip(got, clean)], dtype=np.float64))
    return scores, kept, errors


def calibrate(human: list[str], out: Path, *, model: str | os.PathLike = "default", ai: list[str] | None = None,
              max_fpr: float = 0.01, under: tuple[str, ...] = (), min_works: int = 0, allow_lower: bool = False,
              force: bool = False, name: str | None = None, version: str | None = None, batch_size: int = 16,
              workers: int = DEFAULT_WORKERS, warn: Callable[[str], None] | None = None) -> dict:
    """Make the calibrated model directory ``out``; returns a report (what the command prints). Raises
    :class:`CalibrateError` for what cannot be done, :class:`~detector.bundle.ModelError` for a bad model."""
    from mimicry.detector.bundle import ONNX_FILE, ModelBundle, file_sha256, write_model_json
    from mimicry.detector.calibration import choose_threshold
    from mimicry.detector.detector import Detector

    if not 0 < max_fpr < 0.5:
        raise CalibrateError(f"--max-fpr must be between 0 and 0.5, got {max_fpr}")
    known = under_names() if under else ()
    unknown = [u for u in under if u not in known]
    if unknown:
        raise CalibrateError(f"unknown re-encoding {', '.join(unknown)}; known: {', '.join(known)}")
    bundle = ModelBundle.from_dir(_resolve(model))
    out = Path(out)
    if out.resolve() == bundle.path.resolve():
        raise CalibrateError(f"--out {out} is the model's own directory: write the calibrated model elsewhere")
    if out.exists() and not force and any(out.iterdir()):
        raise CalibrateError(f"{out} exists and is not empty (--force replaces its model files)")

    pairs = list(kinds_of(human, warn))
    if not pairs:
        raise CalibrateError("no image files in " + " ".join(human))
    detector = Detector.from_dir(bundle.path, provenance=False)
    files = [f for f, _ in pairs]
    h_scores, kept, errors = score_files(detector, files, under=under, batch_size=batch_size, workers=workers)
    if not kept:
        raise CalibrateError(f"none of the {len(files)} human files could be read (first: {errors[0][0]}: "
                             f"{errors[0][2]})")
    kinds = np.array([pairs[i][1] for i in kept])
    ai_files = [f for f, _ in kinds_of(ai or [], warn)]
    a_scores, a_kept, a_errors = (score_files(detector, ai_files, batch_size=batch_size, workers=workers)
                                  if ai_files else ([np.zeros(0)], [], []))
    if ai and not a_kept:
        raise CalibrateError("none of the AI files given could be read" if ai_files else
                             "no image files in " + " ".join(ai))

    # The human works alone set it, at the lowest admissible threshold: a platform's few AI examples, often of one
    # generator, would place a gap-top threshold where other generators' images fall below it. They are measured.
    chosen = choose_threshold(h_scores, [], kinds, max_fpr=max_fpr, rule="per-source", min_works=min_works)
    old = bundle.thresholds
    own = chosen["threshold"]
    threshold = own if allow_lower or own >= old.ai_mimicry else old.ai_mimicry
    human_below = min(old.human_below, threshold)

    def flagged(scores: np.ndarray, t: float) -> float | None:
        return float(np.mean(scores >= t)) if len(scores) else None

    by_kind = {}
    for k in sorted(set(kinds.tolist())):
        m = kinds == k
        by_kind[k] = {"works": int(m.sum()), "threshold_alone": chosen["per_source"][k]["threshold"],
                      "flagged_before": flagged(h_scores[0][m], old.ai_mimicry),
                      "flagged_after": flagged(h_scores[0][m], threshold)}
    report = {
        "model": {"name": bundle.name, "version": bundle.version, "path": str(bundle.path),
                  "onnx_sha256": bundle.card["onnx_sha256"], "threshold": old.ai_mimicry},
        "threshold": threshold, "threshold_of_these_works": own, "kept_model_threshold": threshold != own,
        "human_below": human_below, "max_fpr": max_fpr, "under": list(under), "min_works": min_works,
        "human_works": len(kept), "kinds": by_kind, "groups_held": chosen["groups"],
        "human_flagged": {"before": flagged(h_scores[0], old.ai_mimicry), "after": flagged(h_scores[0], threshold)},
        "ai_images": len(a_kept),
        "ai_flagged": {"before": flagged(a_scores[0], old.ai_mimicry), "after": flagged(a_scores[0], threshold)},
        "errors": [{"file": f, "error_code": c, "error": e} for f, c, e in errors + a_errors],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }

    card = copy.deepcopy(bundle.card)
    card.pop("onnx_sha256", None)
    card["name"] = name or bundle.name
    card["version"] = version or f"{bundle.version}+calibrated"
    held = f", clean and under {', '.join(under)}" if under else ", clean"
    card["thresholds"] = {
        "ai_mimicry": threshold,
        "human_below": human_below,
        "how_chosen": (
            f"mimicry calibrate: at most {max_fpr:.0%} of {len(kept)} human works given by the user flagged, and of "
            f"each of their {len(by_kind)} kinds"
            + (f" (kinds of fewer than {min_works} works held together)" if min_works else "") + held
            + (f"; the model's own threshold {old.ai_mimicry:.6g} kept, being higher than these works' "
               f"{own:.6g}" if threshold != own else "")
            + ". human_below: the model's, at most the new threshold (the model's own choice: 'before')"),
        "rule": "per-source",
        "placed_at": "lowest admissible",
        "min_source_works": min_works,
        "fpr_bound_holds_on": ["clean"] + [f"under {u}" for u in under],
        "groups_held": chosen["groups"],
        "calibrated_on_own_works": {k: report[k] for k in (
            "date", "threshold_of_these_works", "kept_model_threshold", "max_fpr", "human_works", "ai_images",
            "human_flagged", "ai_flagged")} | {
            "from_model": report["model"], "kinds": by_kind, "files_unreadable": len(errors) + len(a_errors),
            "note": "the card's metrics are the original export's, measured at its own threshold"},
        "before": bundle.card["thresholds"],
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{ONNX_FILE}.part"
    shutil.copyfile(bundle.onnx_path, tmp)
    if file_sha256(tmp) != bundle.card["onnx_sha256"]:
        tmp.unlink()
        raise CalibrateError(f"copying {bundle.onnx_path} into {out} did not give the same bytes")
    os.replace(tmp, out / ONNX_FILE)
    write_model_json(out, card)
    report["out"] = str(out)
    return report


def _resolve(model: str | os.PathLike) -> Path:
    from mimicry.detector.locations import resolve_model_dir

    return Path(resolve_model_dir(model))


def print_report(console: Console, r: dict) -> None:
    """The kinds table and one line on the threshold, for people."""
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    m = r["model"]
    table = Table(title=f"human works by kind (flagged at {m['threshold']:.4f} -> {r['threshold']:.4f})")
    for col in ("kind", "works", "flagged before", "flagged after", "its own threshold"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for k, v in r["kinds"].items():
        table.add_row(k, str(v["works"]), pct(v["flagged_before"]), pct(v["flagged_after"]),
                      f"{v['threshold_alone']:.4f}")
    console.print(table)
    if r["ai_images"]:
        console.print(f"AI images given: {r['ai_images']}, flagged {pct(r['ai_flagged']['before'])} -> "
                      f"{pct(r['ai_flagged']['after'])}")
    few = [k for k, v in r["kinds"].items() if v["works"] * r["max_fpr"] < 1]
    if few and not r["min_works"]:
        console.print(f"{len(few)} kind(s) with fewer than {int(np.ceil(1 / r['max_fpr']))} works ({', '.join(few[:5])}"
                      f"{', ...' if len(few) > 5 else ''}): none of their works may be flagged, so the highest-scoring "
                      "one sets their threshold (--min-works holds small kinds together)")
    if r["kept_model_threshold"]:
        console.print(f"these works alone would set {r['threshold_of_these_works']:.4f}; the model's own "
                      f"{m['threshold']:.4f} is kept (higher; --allow-lower to go below it)")
    if r["errors"]:
        console.print(f"{len(r['errors'])} file(s) could not be read and were left out, first: "
                      f"{r['errors'][0]['file']}: {r['errors'][0]['error']}")
    console.print(f"wrote {r['out']}: threshold {r['threshold']:.6f} (was {m['threshold']:.6f}); "
                  f"scan with --model {r['out']}")


def run(human: list[str], out: Path, *, stdout: Console | None = None, stderr: Console | None = None,
        report_json: Path | None = None, **kwargs) -> int:
    """The whole ``mimicry calibrate`` command; returns its exit code (0 written, 2 nothing written)."""
    import json

    from mimicry.detector.bundle import ModelError

    stdout = stdout or Console()
    warn, fail = messages(stderr or Console(stderr=True))
    try:
        report = calibrate(human, out, warn=warn, **kwargs)
    except (CalibrateError, ModelError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write {out}: {exc.strerror or exc}")
    if report_json is not None:
        report_json.write_text(json.dumps(report, indent=2) + "\n")
    print_report(stdout, report)
    return EXIT_OK

