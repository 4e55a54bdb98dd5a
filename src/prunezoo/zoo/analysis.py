"""Population analyses of a model zoo and its sparsified twins (``prunezoo zoo analyze``).

Two layers:

- pure metrics (tensors / arrays in, numbers out): :func:`agreement`, :func:`cohen_kappa`,
  :func:`js_divergence`, :func:`linear_cka`, :func:`accuracy_correlation` (Pearson r and Kendall
  tau with p-values), :func:`size_sparsity_correlation` (Spearman), :func:`generalization_gap`,
  :func:`layer_sparsity`;
- :func:`analyze_zoo` reads a zoo directory (``prunezoo.zoo.layout``) and returns a
  :class:`ZooAnalysis`: one row per model and twin (final state), per-layer sparsity rows, and a
  summary per group ("original" and every twin set) with distributions, twin-vs-original
  agreement/kappa/JS/CKA and Pearson/Kendall between original and twin accuracy, plus MP-vs-VD
  curves (accuracy vs sparsity per method). ``ZooAnalysis.write`` stores CSV/JSON tables.

Conventions (where the twins paper is silent):

- accuracies, train accuracy and the generalisation gap come from the models' ``result.json`` line
  of the analysed epoch (as logged during generation / fine-tuning); sparsity is measured on the
  stored state: zero fraction of the conv/linear weights (``prunezoo.sparsity.prunable_parameters``);
- twin-vs-original comparisons re-run both models on the test split of the zoo's dataset;
  JS divergence uses the natural log (bounded by ln 2); CKA compares the penultimate
  representation (the input of the last ``nn.Linear``; the logits if there is none);
- Cohen's kappa of two identical constant predictions (chance agreement 1, kappa 0/0) is 1;
  correlations over fewer than 3 models or over a constant sample are NaN, and so is the CKA of a
  constant representation (e.g. saturated tanh units); group statistics leave NaNs out.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.utils.progress import ProgressBar
from prunezoo.zoo import layout

ORIGINAL = "original"
COMPARISON_METRICS = ("agreement", "kappa", "js", "cka")
MODEL_COLUMNS = (
    "group",
    "method",
    "level",
    "model",
    "original",
    "epoch",
    "test_acc",
    "train_acc",
    "gen_gap",
    "sparsity",
    "original_test_acc",
    "acc_drop",
    *COMPARISON_METRICS,
)
LAYER_COLUMNS = ("group", "method", "level", "model", "layer", "size", "sparsity")

# ------------------------------------------------------------------------------ pure metrics


def _as_tensor(x: Any) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _labels(pred: Any, name: str) -> torch.Tensor:
    """Class predictions from labels (1-D) or scores (2-D, argmax over classes)."""
    t = _as_tensor(pred)
    if t.ndim == 2:
        t = t.argmax(1)
    if t.ndim != 1:
        raise ValueError(f"{name}: expected class labels (N,) or scores (N, C), got shape {tuple(t.shape)}")
    if t.is_floating_point():
        if not torch.equal(t, t.round()):
            raise ValueError(f"{name}: labels must be integers")
    return t.long()


def _pair(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    la, lb = _labels(a, "pred_a"), _labels(b, "pred_b")
    if la.shape != lb.shape:
        raise ValueError(f"pred_a and pred_b differ in length: {len(la)} vs {len(lb)}")
    if len(la) == 0:
        raise ValueError("no predictions to compare")
    return la, lb


def agreement(pred_a: Any, pred_b: Any) -> float:
    """Fraction of samples on which two models predict the same class (labels are not used).

    Accepts class labels ``(N,)`` or scores/logits ``(N, C)`` (argmax taken)."""
    la, lb = _pair(pred_a, pred_b)
    return float((la == lb).double().mean())


def cohen_kappa(pred_a: Any, pred_b: Any) -> float:
    """Cohen's kappa of two models' predicted classes: ``(p_o - p_e) / (1 - p_e)``.

    ``p_o`` is :func:`agreement`, ``p_e`` the agreement expected from the two predicted-class
    marginals. Chance-corrected, so two models that both predict the majority class score 0, not
    their raw agreement. Both constant and equal (``p_e = 1``): 1 by convention."""
    la, lb = _pair(pred_a, pred_b)
    if int(min(la.min(), lb.min())) < 0:
        raise ValueError("class labels must be non-negative")
    k = int(max(la.max(), lb.max())) + 1
    n = len(la)
    confusion = torch.bincount(la * k + lb, minlength=k * k).reshape(k, k).double()
    p_o = float(confusion.trace()) / n
    p_e = float((confusion.sum(1) * confusion.sum(0)).sum()) / n**2
    if p_e >= 1.0:
        return 1.0
    return (p_o - p_e) / (1.0 - p_e)


def js_divergence(logits_a: Any, logits_b: Any, *, base: float | None = None, from_logits: bool = True) -> float:
    """Mean Jensen-Shannon divergence between two models' softmax outputs, natural log by default
    (in ``[0, ln 2]``; ``base=2`` gives bits, in ``[0, 1]``).

    Equal to the mean of ``scipy.spatial.distance.jensenshannon(p, q) ** 2``. ``from_logits=False``
    takes probability rows instead of logits."""
    a, b = _as_tensor(logits_a).double(), _as_tensor(logits_b).double()
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (N, C) arrays of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] == 0:
        raise ValueError("no outputs to compare")
    if from_logits:
        p, q = a.softmax(1), b.softmax(1)
    else:
        p, q = a / a.sum(1, keepdim=True), b / b.sum(1, keepdim=True)
    m = 0.5 * (p + q)
    # xlogy: 0 * log(0 / m) = 0, so one-hot probabilities are fine.
    kl = lambda x: (torch.xlogy(x, x) - torch.xlogy(x, m)).sum(1)
    js = (0.5 * (kl(p) + kl(q))).clamp_min(0.0).mean()
    return float(js) / (math.log(base) if base is not None else 1.0)


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` of column-centred activations.

    ``x`` (N, p) and ``y`` (N, q) are two representations of the same N inputs (extra dims are
    flattened). Invariant to orthogonal transforms and isotropic scaling; 1 for identical
    representations. NaN if either representation is constant over the samples."""
    X, Y = _as_tensor(x).double(), _as_tensor(y).double()
    if X.ndim < 2 or Y.ndim < 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"expected (N, ...) activations for the same N inputs, got {tuple(X.shape)} and {tuple(Y.shape)}"
        )
    if X.shape[0] < 2:
        raise ValueError("linear CKA needs at least 2 samples")
    X, Y = X.flatten(1), Y.flatten(1)
    X, Y = X - X.mean(0), Y - Y.mean(0)
    if X.shape[0] < max(X.shape[1], Y.shape[1]):  # fewer samples than features: the Gram form is cheaper
        K, L = X @ X.T, Y @ Y.T
        cross, nx, ny = (K * L).sum(), K.norm(), L.norm()
    else:
        cross, nx, ny = (Y.T @ X).norm() ** 2, (X.T @ X).norm(), (Y.T @ Y).norm()
    if float(nx) == 0.0 or float(ny) == 0.0:
        return math.nan
    return float(cross / (nx * ny))


@dataclass
class Correlation:
    """Pearson r and Kendall tau (with two-sided p-values) over ``n`` paired values."""

    n: int
    pearson_r: float = math.nan
    pearson_p: float = math.nan
    kendall_tau: float = math.nan
    kendall_p: float = math.nan


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"expected two equally long 1-D sequences, got shapes {xa.shape} and {ya.shape}")
    ok = np.isfinite(xa) & np.isfinite(ya)
    return xa[ok], ya[ok]


def _constant(v: np.ndarray) -> bool:
    return bool(np.all(v == v[0]))


def accuracy_correlation(original: Sequence[float], twin: Sequence[float]) -> Correlation:
    """Pearson r and Kendall tau across a population between original and twin accuracies
    (``scipy.stats``; pairs with a NaN are dropped; NaN below 3 pairs or for a constant side)."""
    from scipy import stats

    xa, ya = _finite_pairs(original, twin)
    out = Correlation(n=len(xa))
    if len(xa) < 3 or _constant(xa) or _constant(ya):
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = stats.pearsonr(xa, ya)
        tau = stats.kendalltau(xa, ya)
    out.pearson_r, out.pearson_p = float(r.statistic), float(r.pvalue)
    out.kendall_tau, out.kendall_p = float(tau.statistic), float(tau.pvalue)
    return out


def size_sparsity_correlation(sizes: Sequence[float], sparsities: Sequence[float]) -> tuple[float, float]:
    """Spearman rho (and p-value) between layer size (#weights) and layer sparsity: positive when
    larger layers are pruned more. NaN below 3 layers or for a constant side."""
    from scipy import stats

    xa, ya = _finite_pairs(sizes, sparsities)
    if len(xa) < 3 or _constant(xa) or _constant(ya):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.spearmanr(xa, ya)
    return float(res.statistic), float(res.pvalue)


def generalization_gap(train_acc: float, test_acc: float) -> float:
    """Train accuracy minus test accuracy (positive: the model fits train better than test)."""
    return float(train_acc) - float(test_acc)


def layer_sparsity(model: nn.Module) -> dict[str, tuple[int, float]]:
    """``{weight name: (size, zero fraction)}`` over the prunable (conv/linear) weights."""
    from prunezoo.sparsity import prunable_parameters

    return {
        name: (p.numel(), float((p == 0).sum()) / p.numel())
        for name, p in prunable_parameters(model).items()
        if p.numel()
    }


def global_sparsity(layers: Mapping[str, tuple[int, float]]) -> float:
    total = sum(n for n, _ in layers.values())
    return sum(n * s for n, s in layers.values()) / total if total else math.nan


# ------------------------------------------------------------------------------ model outputs


@dataclass
class Outputs:
    """A model's logits and penultimate activations on an evaluation set."""

    logits: torch.Tensor
    features: torch.Tensor


@torch.no_grad()
def model_outputs(model: nn.Module, dataset, batch_size: int = 1024) -> Outputs:
    """Logits and the input of the model's last ``nn.Linear`` (its penultimate representation)."""
    from prunezoo.training.evaluate import prepare_inputs

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    captured: list[torch.Tensor] = []
    hook = (
        linears[-1].register_forward_hook(lambda m, i, o: captured.append(i[0].flatten(1).double()))
        if linears
        else None
    )
    model.eval()
    logits = []
    try:
        for start in range(0, len(dataset.y), batch_size):
            logits.append(model(prepare_inputs(dataset, dataset.x[start : start + batch_size])).double())
    finally:
        if hook is not None:
            hook.remove()
    logits_t = torch.cat(logits)
    return Outputs(logits_t, torch.cat(captured) if captured else logits_t)


def compare_outputs(original: Outputs, twin: Outputs) -> dict[str, float]:
    """Agreement, Cohen's kappa, JS divergence (nats) and linear CKA of a twin vs its original."""
    return {
        "agreement": agreement(original.logits, twin.logits),
        "kappa": cohen_kappa(original.logits, twin.logits),
        "js": js_divergence(original.logits, twin.logits),
        "cka": linear_cka(original.features, twin.features),
    }


# ------------------------------------------------------------------------------ the zoo


def _stats(values: Sequence[float]) -> dict[str, float]:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "median": math.nan, "max": math.nan}
    return {
        "mean": statistics.fmean(v),
        "std": statistics.stdev(v) if len(v) > 1 else 0.0,
        "min": min(v),
        "median": statistics.median(v),
        "max": max(v),
    }


@dataclass
class GroupSummary:
    """Distributions and correlations of one group: the originals or one twin set."""

    group: str
    method: str
    level: float | None
    n: int
    test_acc: dict[str, float]
    gen_gap: dict[str, float]
    sparsity: dict[str, float]
    comparisons: dict[str, dict[str, float]] = field(default_factory=dict)
    correlation: Correlation | None = None
    size_sparsity_spearman: float = math.nan
    size_sparsity_p: float = math.nan
    agreement_accuracy: Correlation | None = None  # agreement vs the original's accuracy across the set
    layers: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class ZooAnalysis:
    """Result of :func:`analyze_zoo`: tidy rows plus per-group summaries."""

    zoo: str
    models: list[dict[str, Any]]
    layers: list[dict[str, Any]]
    groups: list[GroupSummary]
    notes: list[str] = field(default_factory=list)

    def group(self, name: str) -> GroupSummary:
        for g in self.groups:
            if g.group == name:
                return g
        raise KeyError(f"no group {name!r}; groups: {[g.group for g in self.groups]}")

    def rows(self, group: str) -> list[dict[str, Any]]:
        return [r for r in self.models if r["group"] == group]

    def curves(self) -> dict[str, list[dict[str, float]]]:
        """MP-vs-VD curves: per twin method, ``{level, sparsity, test_acc, std, n}`` points by sparsity."""
        out: dict[str, list[dict[str, float]]] = {}
        for g in self.groups:
            if g.group == ORIGINAL:
                continue
            out.setdefault(g.method, []).append(
                {
                    "group": g.group,
                    "level": g.level,
                    "sparsity": g.sparsity["mean"],
                    "test_acc": g.test_acc["mean"],
                    "std": g.test_acc["std"],
                    "n": g.n,
                }
            )
        for points in out.values():
            points.sort(key=lambda p: (p["sparsity"], p["group"]))
        return out

    def summary_rows(self) -> list[dict[str, Any]]:
        """One flat row per group (the ``summary.csv`` table)."""
        out = []
        for g in self.groups:
            row: dict[str, Any] = {"group": g.group, "method": g.method, "level": g.level, "n": g.n}
            for name in ("test_acc", "gen_gap", "sparsity"):
                row |= {f"{name}_{k}": v for k, v in getattr(g, name).items()}
            for metric in COMPARISON_METRICS:
                row[f"{metric}_mean"] = g.comparisons.get(metric, {}).get("mean", math.nan)
                row[f"{metric}_std"] = g.comparisons.get(metric, {}).get("std", math.nan)
            corr = g.correlation or Correlation(n=0)
            row |= {k: v for k, v in asdict(corr).items() if k != "n"}
            row["size_sparsity_spearman"], row["size_sparsity_p"] = g.size_sparsity_spearman, g.size_sparsity_p
            agree = g.agreement_accuracy or Correlation(n=0)
            row["agreement_accuracy_r"], row["agreement_accuracy_p"] = agree.pearson_r, agree.pearson_p
            out.append(row)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "zoo": self.zoo,
            "notes": self.notes,
            "groups": [asdict(g) for g in self.groups],
            "curves": self.curves(),
            "models": self.models,
        }

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write ``models.csv``, ``layers.csv``, ``summary.csv`` and ``analysis.json`` into ``directory``."""
        from prunezoo.utils.io import write_json, write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "models": directory / "models.csv",
            "layers": directory / "layers.csv",
            "summary": directory / "summary.csv",
            "json": directory / "analysis.json",
        }
        summary = self.summary_rows()
        write_text(paths["models"], _csv(self.models, MODEL_COLUMNS))
        write_text(paths["layers"], _csv(self.layers, LAYER_COLUMNS))
        write_text(paths["summary"], _csv(summary, tuple(summary[0]) if summary else ("group",)))
        write_json(paths["json"], _json_safe(self.to_json()))
        return paths


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return buf.getvalue()


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None so the JSON is standard."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _result_row(model_dir: Path, epoch: int) -> dict[str, Any]:
    rows = [r for r in layout.read_results(model_dir) if int(r.get("epoch", -1)) == epoch]
    return rows[-1] if rows else {}


def _resolve_epoch(model_dir: Path, epoch: int | None) -> int:
    epochs = layout.list_epochs(model_dir)
    if not epochs:
        raise ConfigError("zoo", f"{model_dir} has no stored checkpoints")
    if epoch is None:
        return epochs[-1]
    if epoch < 0:  # -1: last, -2: one before, ...
        return epochs[epoch] if -epoch <= len(epochs) else epochs[0]
    if epoch not in epochs:
        raise ConfigError("epoch", f"{model_dir.name} has no checkpoint for epoch {epoch} (stored: {epochs})")
    return epoch


def _model_record(
    model_dir: Path, group: str, method: str, level: float | None, epoch: int | None, layers_out: list[dict[str, Any]]
) -> tuple[dict[str, Any], nn.Module]:
    ep = _resolve_epoch(model_dir, epoch)
    model = layout.load_model(model_dir, ep)
    per_layer = layer_sparsity(model)
    res = _result_row(model_dir, ep)
    test, train = res.get("test_acc"), res.get("train_acc")
    params = layout.read_params(model_dir)
    row = {
        "group": group,
        "method": method,
        "level": level,
        "model": model_dir.name,
        "original": params.get("original", model_dir.name if group == ORIGINAL else None),
        "epoch": ep,
        "test_acc": test,
        "train_acc": train,
        "gen_gap": generalization_gap(train, test) if test is not None and train is not None else None,
        "sparsity": global_sparsity(per_layer),
    }
    for name, (size, sp) in per_layer.items():
        layers_out.append(
            {
                "group": group,
                "method": method,
                "level": level,
                "model": model_dir.name,
                "layer": name,
                "size": size,
                "sparsity": sp,
            }
        )
    return row, model


def _twin_groups(zoo: Path) -> list[tuple[str, str, float | None, Path]]:
    """``(set name, method, level, dir)`` per twin set, by method then level (VD has level None)."""
    out = []
    for name, d in layout.list_twin_sets(zoo).items():
        cfg = layout.read_zoo_config(d)
        method = cfg.get("method")
        method_name = method.get("name") if isinstance(method, Mapping) else (method or name)
        level = cfg.get("level")
        out.append((name, str(method_name), None if level is None else float(level), d))
    return sorted(out, key=lambda t: (t[1], -1.0 if t[2] is None else t[2], t[0]))


def _summarise(
    name: str, method: str, level: float | None, rows: list[dict[str, Any]], layers: list[dict[str, Any]], compare: bool
) -> GroupSummary:
    g = GroupSummary(
        group=name,
        method=method,
        level=level,
        n=len(rows),
        test_acc=_stats([r["test_acc"] for r in rows]),
        gen_gap=_stats([r["gen_gap"] for r in rows]),
        sparsity=_stats([r["sparsity"] for r in rows]),
    )
    by_layer: dict[str, list[tuple[int, float]]] = {}
    for r in layers:
        by_layer.setdefault(r["layer"], []).append((r["size"], r["sparsity"]))
    g.layers = {
        k: {
            "size": float(v[0][0]),
            "sparsity": statistics.fmean(s for _, s in v),
            "std": statistics.stdev([s for _, s in v]) if len(v) > 1 else 0.0,
        }
        for k, v in by_layer.items()
    }
    g.size_sparsity_spearman, g.size_sparsity_p = size_sparsity_correlation(
        [v["size"] for v in g.layers.values()], [v["sparsity"] for v in g.layers.values()]
    )
    if name != ORIGINAL:
        g.correlation = accuracy_correlation(
            [r["original_test_acc"] if r["original_test_acc"] is not None else math.nan for r in rows],
            [r["test_acc"] if r["test_acc"] is not None else math.nan for r in rows],
        )
        if compare:
            g.comparisons = {m: _stats([r.get(m) for r in rows]) for m in COMPARISON_METRICS}
            g.agreement_accuracy = accuracy_correlation(
                [math.nan if r["original_test_acc"] is None else r["original_test_acc"] for r in rows],
                [r.get("agreement", math.nan) for r in rows],
            )
    return g


def analyze_zoo(
    path: str | Path,
    *,
    epoch: int | None = None,
    compare: bool = True,
    max_samples: int | None = None,
    progress: bool = False,
) -> ZooAnalysis:
    """Analyse every finished model of the zoo at ``path`` and every twin set under ``twins/``.

    ``epoch``: the state to analyse (default: each model's last stored epoch; negative counts from
    the end). ``compare``: run twin vs original on the test split for agreement, kappa, JS and CKA
    (needs the zoo's dataset offline). ``max_samples``: compare on the first N test samples only.
    """
    zoo = Path(path)
    if not (zoo / layout.CONFIG_FILE).is_file():
        raise ConfigError("zoo", f"{zoo} is not a zoo directory (no {layout.CONFIG_FILE})")
    if max_samples is not None and max_samples < 2:
        raise ConfigError("max_samples", f"must be at least 2, got {max_samples}")
    originals = layout.list_models(zoo)
    if not originals:
        raise ConfigError("zoo", f"{zoo} has no finished models")
    notes: list[str] = []
    models: list[dict[str, Any]] = []
    layers: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}
    original_models: dict[str, nn.Module] = {}
    sets = _twin_groups(zoo)
    n_twins = sum(len(layout.list_models(d)) for *_, d in sets)
    bar = ProgressBar("analysing models", len(originals) + n_twins, enabled=progress).start()
    for d in originals:
        row, model = _model_record(d, ORIGINAL, ORIGINAL, None, epoch, layers)
        models.append(row)
        by_name[d.name], original_models[d.name] = row, model
        bar.advance()

    outputs = functools.lru_cache(maxsize=None)(
        lambda name: model_outputs(original_models[name], _eval_set(zoo, name, max_samples))
    )
    can_compare = compare
    groups = [_summarise(ORIGINAL, ORIGINAL, None, models, layers, False)]
    for set_name, method, level, set_dir in sets:
        rows, set_layers = [], []
        for d in layout.list_models(set_dir):
            row, model = _model_record(d, set_name, method, level, epoch, set_layers)
            orig = by_name.get(row["original"])
            row["original_test_acc"] = orig["test_acc"] if orig else None
            row["acc_drop"] = (
                (orig["test_acc"] - row["test_acc"])
                if orig and orig["test_acc"] is not None and row["test_acc"] is not None
                else None
            )
            if orig is None:
                notes.append(f"{set_name}/{d.name}: original {row['original']!r} not found or unfinished")
            elif can_compare:
                try:
                    row |= compare_outputs(
                        outputs(orig["model"]), model_outputs(model, _eval_set(zoo, orig["model"], max_samples))
                    )
                except (FileNotFoundError, ValueError, KeyError) as err:
                    notes.append(f"twin comparisons skipped: no evaluation data ({err})")
                    can_compare = False
            rows.append(row)
            bar.advance()
        models += rows
        layers += set_layers
        groups.append(_summarise(set_name, method, level, rows, set_layers, compare and can_compare))
    bar.close()
    return ZooAnalysis(zoo=str(zoo), models=models, layers=layers, groups=groups, notes=notes)


def _eval_set(zoo: Path, model_name: str, max_samples: int | None):
    params = layout.read_params(zoo / model_name)
    spec = params.get("dataset") or layout.read_zoo_config(zoo).get("dataset")
    if not spec:
        raise KeyError(f"{model_name} has no dataset in params.json and the zoo config names none")
    test = _load_test(json.dumps(spec, sort_keys=True))
    if max_samples is not None and max_samples < len(test):
        test = test.subset(torch.arange(max_samples))
    return test


@functools.lru_cache(maxsize=4)
def _load_test(spec_json: str):
    return layout.load_zoo_data(json.loads(spec_json)).test
