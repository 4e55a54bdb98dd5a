"""Per-run training diagnostics of a finished study (seed 001's underfitting checks).

For every pruned model: final train cross-entropy, test (and, with a validation split, validation)
output entropy (label-free convergence check), channel sparsity (share of all-zero output channels),
mask IoU with the previous IMP level, loss along the linear path from the previous IMP level's weights
(BN statistics recomputed at every point; ``interpolation_barrier`` = largest rise above the straight
line between the end losses),
sharpness (top Hessian eigenvalue of the test loss over the unpruned weights, by HVP power
iteration on a few batches) and test-set calibration: reliability bins (15, right-closed), class-wise
reliability mean ± std over classes, histogram of predicted-class confidence. On GMM data also the
gap to the closed-form posterior on fresh samples (mean |p − p*|, over-confidence, model vs Bayes error).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from prunezoo.experiments.jobs import JobContext
from prunezoo.metrics.calibration import calibration, classwise_reliability, confidence_histogram
from prunezoo.metrics.diagnostics import hessian_top_eigenvalue, interpolation_curve
from prunezoo.metrics.posterior import posterior_gap
from prunezoo.sparsity import MaskSet
from prunezoo.training.checkpoint import load_state
from prunezoo.training.evaluate import predict
from prunezoo.utils.io import write_json


def _artifacts(job_dir: Path, suffix: str) -> tuple[Path, Path]:
    base = job_dir / f"level_{int(suffix[2:]):02d}" if suffix.startswith("/L") else job_dir
    return base / "final.safetensors", base / "masks.safetensors"


def _calibration(model, dataset, n_bins: int = 15) -> dict:
    logits, labels = predict(model, dataset)
    probs = logits.softmax(1)
    bins = calibration(probs, labels, n_bins)
    cw = classwise_reliability(probs, labels, n_bins)
    nan_to_none = lambda t: [None if v != v else float(v) for v in t.tolist()]
    return {
        "ece": bins.ece,
        "mce": bins.mce,
        "counts": bins.counts.tolist(),
        "accuracy": nan_to_none(bins.accuracy),
        "confidence": nan_to_none(bins.confidence),
        "classwise_mean": nan_to_none(cw["mean"]),
        "classwise_std": nan_to_none(cw["std"]),
        "histogram": confidence_histogram(probs, n_bins).tolist(),
    }


def _barrier(curve: list[dict]) -> float:
    first, last = curve[0]["loss"], curve[-1]["loss"]
    return max(p["loss"] - ((1 - p["position"]) * first + p["position"] * last) for p in curve)


def diagnose_study(
    study_dir: str | Path,
    *,
    sharpness: bool = True,
    batches: int = 2,
    iterations: int = 20,
    interpolation_points: int = 5,
) -> list[dict]:
    """Diagnostics for every run of a finished study; also written to ``diagnostics.json``.
    ``interpolation_points=0`` skips the IMP level-to-level interpolation."""
    study_dir = Path(study_dir)
    rows = json.loads((study_dir / "results.json").read_text())["rows"]
    histories = json.loads((study_dir / "histories.json").read_text())
    contexts: dict[str, JobContext] = {}
    previous_mask: dict[str, MaskSet] = {}
    previous_state: dict[str, dict] = {}
    out = []
    for row in rows:
        job_id, _, rest = row["run_id"].partition("/")
        suffix = f"/{rest}" if rest else ""
        job_dir = study_dir / "runs" / job_id
        weights, mask_path = _artifacts(job_dir, suffix)
        masks = MaskSet.load(mask_path) if mask_path.exists() else None
        last = (histories.get(row["run_id"]) or [{}])[-1]
        rec = {
            "run_id": row["run_id"],
            "method": row["method"],
            "level": row["level"],
            "seed": row["seed"],
            "point": row["point"],
            "sparsity": row["sparsity"],
            "train_loss": row["train_loss"],
            "test_entropy": last.get("test_entropy"),
            "val_entropy": last.get("val_entropy"),
            "channel_sparsity": masks.global_channel_sparsity() if masks is not None else 0.0,
            "iou_previous_level": None,
            "sharpness": None,
        }
        if masks is not None and row["kind"] == "imp":
            prev = previous_mask.get(job_id)
            rec["iou_previous_level"] = masks.iou(prev) if prev is not None else None
            previous_mask[job_id] = masks
        if weights.exists():
            if job_id not in contexts:
                job = json.loads((job_dir / "job.json").read_text())
                contexts[job_id] = JobContext(job["spec"], job_dir, study_dir / "runs")
            ctx = contexts[job_id]
            model = ctx.build_model()
            model.load_state_dict(load_state(weights))
            rec["calibration"] = _calibration(model, ctx.splits.test)
            meta = ctx.splits.meta or {}
            if meta.get("source") == "prunezoo.data.gmm":  # closed-form posterior: |p_model − p*| on fresh samples
                rec["posterior_gap"] = posterior_gap(model, meta["kind"], nu=meta["nu"], dim=meta["dim"], n=5000)
            if row["kind"] == "imp" and interpolation_points >= 2:
                state = {k: v.clone() for k, v in model.state_dict().items()}
                prev = previous_state.get(job_id)
                if prev is not None:
                    test, train = ctx.splits.test, ctx.splits.train
                    eval_b = [test.get_batch(torch.arange(0, min(256, len(test))))]
                    bn_b = [train.get_batch(torch.arange(s, min(s + 128, len(train)))) for s in (0, 128)]
                    curve = interpolation_curve(
                        model, [prev, state], eval_b, points=interpolation_points, bn_batches=bn_b
                    )
                    rec["interpolation"] = curve
                    rec["interpolation_barrier"] = _barrier(curve)
                previous_state[job_id] = state
        if sharpness and weights.exists():
            test = ctx.splits.test
            data = [
                test.get_batch(torch.arange(start, min(start + 256, len(test))))
                for start in range(0, min(len(test), batches * 256), 256)
            ]
            rec["sharpness"] = hessian_top_eigenvalue(
                model, data, iterations=iterations, masks=dict(masks.items()) if masks is not None else None
            )
        out.append(rec)
    write_json(study_dir / "diagnostics.json", out)
    return out
