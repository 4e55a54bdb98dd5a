"""``er-allocation`` (random pruning with ER layer densities; seed 002).

Pre-registered protocol v3 (fixed before any v3 run):
  data: digits (1,797 8x8 images, the bundled split); model: MLP 64-100-100-10 ("narrow") and
  64-400-400-10 ("wide", a sweep of model.options.hidden); random masks drawn at init (kind at-init,
  criterion random) with uniform, ERK, balanced and pyramidal layer densities at 90 % and 95 % sparsity,
  trained from scratch 20 epochs (SGD 0.05, cosine, batch 64); n = 40 paired seeds 200..239. Claims:
  (1) balanced >= ERK, (2) pyramidal >= ERK, (3) ERK >= uniform, on the per-seed mean over both
      sparsities of the WIDE net: non-inferiority, holds if the 95 % interval of the difference is above
      −0.5 pp, does not hold if it is below −0.5 pp;
  (4) wider ER networks close the gap to dense: (dense − ER-ERK) narrow minus (dense − ER-ERK) wide,
      holds above 0, does not hold below +0.5 pp.
  History. v1 (n = 8, seeds 0..7, pilot) and v2 (n = 20, seeds 100..119) judged (1)-(3) on the narrow
  net; v2 left (1) inconclusive: balanced − ERK +0.81 pp [−1.63, +3.25], sd ~5 pp, because the narrow net
  at 90-95 % sits at ~54 % accuracy (dense 97 %), a collapse regime far from the paper's, where ER
  networks stay competitive with dense. v3 moves (1)-(3) to the wide net (ERK ~91 %) — decided before
  looking at v2's wide-net allocation numbers — and then used them as a pilot for n: sd of balanced − ERK
  0.82 pp (v2, wide, n = 20), so n = 40 fresh seeds give an interval half-width of ~0.26 pp (MDE ~0.4 pp,
  printed before the run). The v2 run's pyramidal collapse on the narrow net (3 layers: p_3 = p_1^3 leaves
  ~2 of the output layer's 1,000 weights at 95 %) is the allocation's own consequence, not a bug.
"""

from __future__ import annotations

from prunezoo.bench.findings.base import (
    ACC_MARGIN,
    Finding,
    Protocol,
    Verdict,
    noninferiority_verdict,
    paired_verdict,
    per_seed,
    register_finding,
)

SCHEMES = ("uniform", "erk", "balanced", "pyramidal")
NARROW, WIDE = [100, 100], [400, 400]
SPARSITIES = [0.9, 0.95]
ER_SEEDS = 40


def _methods(sparsities: list[float]) -> list[dict]:
    return [
        {"name": f"er-{s}", "kind": "at-init", "criterion": "random", "scheme": s, "sparsities": sparsities}
        for s in SCHEMES
    ]


def study(quick: bool) -> dict:
    return {
        "replicates": 2 if quick else ER_SEEDS,
        "seed": 0 if quick else 200,  # v3: fresh seeds, not v1's (0..) or v2's (100..)
        "sweep": {"model.options.hidden": [NARROW, WIDE]},
        "dataset": {"name": "digits"},
        "model": {"name": "mlp"},
        "training": {
            "epochs": 1 if quick else 20,
            "batch_size": 64,
            "lr": 0.05,
            "lr_schedule": "cosine",
            "checkpoint_every": 10,  # tiny epochs: fewer resume checkpoints (same results, not hashed)
        },
        "methods": _methods(SPARSITIES[:1] if quick else SPARSITIES),
    }


def paper_study() -> dict:
    # the paper's CIFAR-10 setting: ResNet-20 (and wider), random ER masks trained from scratch, 160 epochs
    return {
        "replicates": 3,
        "sweep": {"model.options.width": [16, 32]},
        "dataset": {"name": "cifar10", "root": "data", "val_fraction": 0.1, "options": {"augment": "cifar-crop-flip"}},
        "model": {"name": "resnet20"},
        "training": {
            "epochs": 160,
            "batch_size": 128,
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "lr_schedule": "step",
            "milestones": [80, 120],
        },
        "methods": _methods([0.9, 0.95, 0.98]),
    }


def _point(rows: list[dict], wide: bool) -> str:
    """The narrowest (or widest) sweep point, by its dense model's size."""
    dense = [r for r in rows if r["kind"] == "dense"] or rows
    pick = max if wide else min
    return pick(dense, key=lambda r: r.get("prunable") or 0).get("point") or ""


def judge(rows: list[dict]) -> list[Verdict]:
    narrow, wide = _point(rows, False), _point(rows, True)
    acc = lambda m, p=wide: per_seed(rows, method=m, point=p)  # v3: allocations compared on the wide net
    gap = lambda p: {s: d - acc("er-erk", p).get(s, float("nan")) for s, d in acc("dense", p).items()}
    narrow_gap, wide_gap = gap(narrow), gap(wide)
    targets = sorted({r.get("target_sparsity") or r["sparsity"] for r in rows if r["kind"] != "dense"})
    where = f"on {wide} at sparsity {', '.join(f'{s:.0%}' for s in targets)}"
    return [
        noninferiority_verdict(
            f"random ER masks: balanced densities match or beat ERK {where}",
            acc("er-balanced"),
            acc("er-erk"),
            a_label="balanced",
            b_label="ERK",
        ),
        noninferiority_verdict(
            f"random ER masks: pyramidal densities match or beat ERK {where}",
            acc("er-pyramidal"),
            acc("er-erk"),
            a_label="pyramidal",
            b_label="ERK",
        ),
        noninferiority_verdict(
            f"random ER masks: ERK densities match or beat uniform {where}",
            acc("er-erk"),
            acc("er-uniform"),
            a_label="ERK",
            b_label="uniform",
        ),
        paired_verdict(
            f"wider ER networks close the gap to dense: (dense − ER-ERK) at {narrow} minus at {wide}",
            {s: v for s, v in narrow_gap.items() if s in wide_gap},
            wide_gap,
            a_label="gap narrow",
            b_label="gap wide",
        ),
    ]


FINDING = register_finding(
    Finding(
        "er-allocation",
        "random pruning with ER densities (seed 002)",
        "For random ER networks trained from scratch at high sparsity, balanced/pyramidal >= ERK >= uniform "
        "layer densities, and wider ER networks close the gap to dense.",
        study,
        judge,
        protocol=Protocol(
            data="digits (bundled)",
            model="MLP 64-100-100-10 and 64-400-400-10",
            budget="20 epochs SGD 0.05 cosine batch 64, random masks at init at 90 % and 95 %",
            n=ER_SEEDS,
            claim="on the wide net: balanced >= ERK, pyramidal >= ERK, ERK >= uniform (non-inferiority 0.5 pp); "
            "gap narrow > gap wide",
            margin=f"{ACC_MARGIN * 100:g} pp",
            expected_sd=0.82,
            sd_source="pilot (v2 wide net, n = 20): sd of balanced − ERK",
        ),
        paper_study=paper_study,
        published="ResNet18/CIFAR-10: balanced/pyramidal ER competitive with or better than ERK up to 99 % sparsity",
    )
)
