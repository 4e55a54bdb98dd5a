"""``lottery-ticket`` (Frankle & Carbin 2019; survey, seed 004).

Pre-registered protocol (fixed before any default-budget run):
  data: mnist5k (the 5,000-image MNIST subset bundled offline; 4,000 train of which 10 % validation,
  1,000 test); model: LeNet-300-100; training: 10 epochs, Adam lr 1.2e-3, batch 60 (the paper's optimiser);
  IMP: global magnitude, 20 % of the remaining weights per level, 10 levels, rewind to init, so levels
  8, 9, 10 have density 16.8 %, 13.4 %, 10.7 % (the 10-20 % band); branches at those levels: the same mask
  with a fresh random init (random-reinit) and a random mask with the same layer densities (random-mask);
  n = 8 paired seeds. Claims, each on the per-seed mean over levels 8-10:
  (1) tickets match or beat the dense net: non-inferiority, holds if the 95 % interval of
      ticket − dense is above −0.5 pp, does not hold if it is below −0.5 pp;
  (2) tickets beat random reinit, (3) tickets beat the random mask: holds above 0, does not hold below
      +0.5 pp. Reported as well: the early-stopping iteration (step of minimum validation loss).
  Expected sd of the paired difference: 1.0 pp (a guess from the seed-to-seed sd of LeNet-300-100 on 4k
  MNIST images, no pilot); MDE printed before the run.
"""

from __future__ import annotations

import statistics

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

LEVELS, TICKET_LEVELS = 10, [8, 9, 10]


def study(quick: bool) -> dict:
    levels = 2 if quick else LEVELS
    ticket = [levels] if quick else TICKET_LEVELS
    return {
        "replicates": 2 if quick else 8,
        "dataset": {"name": "mnist5k", "val_fraction": 0.1},
        "model": {"name": "lenet-300-100"},
        # quick: 15 steps (a quarter epoch) per training, a smoke test of the pipeline only
        "training": {
            **({"steps": 15} if quick else {"epochs": 10}),
            **{"batch_size": 60, "optimizer": "adam", "lr": 1.2e-3, "checkpoint_every": 5},
        },
        "methods": [
            {
                "name": "lth",
                "kind": "imp",
                "levels": levels,
                "fraction": 0.2,
                "reset": "rewind-init",
                "branches": [
                    {"name": "reinit", "kind": "random-reinit", "levels": ticket},
                    {"name": "randmask", "kind": "random-mask", "levels": ticket},
                ],
            }
        ],
    }


def paper_study() -> dict:
    # the paper: full MNIST (60k/10k, 5k validation), LeNet-300-100, Adam 1.2e-3, batch 60, 50k iterations
    return {
        "replicates": 5,
        "dataset": {"name": "mnist", "root": "data", "val_fraction": 0.0833},
        "model": {"name": "lenet-300-100"},
        "training": {"epochs": 55, "batch_size": 60, "optimizer": "adam", "lr": 1.2e-3},
        "methods": [
            {
                "name": "lth",
                "kind": "imp",
                "levels": 15,
                "fraction": 0.2,
                "reset": "rewind-init",
                "branches": [
                    {"name": "reinit", "kind": "random-reinit", "levels": [8, 9, 10]},
                    {"name": "randmask", "kind": "random-mask", "levels": [8, 9, 10]},
                ],
            }
        ],
    }


def _levels(rows: list[dict]) -> list[int]:
    top = max((r["level"] for r in rows if r["kind"] == "imp" and r.get("level")), default=0)
    return [lv for lv in TICKET_LEVELS if lv <= top] or ([top] if top else [])


def _ticket_rows(rows: list[dict], kind: str, method: str, levels: list[int]) -> list[dict]:
    return [r for r in rows if r["kind"] == kind and r["method"] == method and r.get("level") in levels]


def judge(rows: list[dict]) -> list[Verdict]:
    levels = _levels(rows)
    lth = "lth"
    ticket = per_seed(_ticket_rows(rows, "imp", lth, levels))
    dense = per_seed(rows, kind="dense")
    branch = lambda b: per_seed(
        [r for r in rows if r["kind"] == "branch" and str(r["method"]).endswith(b) and r.get("level") in levels]
    )
    stops = lambda rs: [r["early_stop_step"] for r in rs if r.get("early_stop_step") is not None]
    early = {
        "ticket": stops(_ticket_rows(rows, "imp", lth, levels)),
        "random-reinit": stops([r for r in rows if r["kind"] == "branch" and str(r["method"]).endswith("reinit")]),
        "dense": stops([r for r in rows if r["kind"] == "dense"]),
    }
    early_text = ", ".join(f"{k} {statistics.fmean(v):.0f}" for k, v in early.items() if v)
    band = f"levels {levels} (density {', '.join(f'{0.8**lv:.1%}' for lv in levels)})"
    first = noninferiority_verdict(
        f"IMP winning tickets at {band} match or beat the dense LeNet-300-100"
        + (f"; early-stopping iteration (mean step of min. validation loss): {early_text}" if early_text else ""),
        ticket,
        dense,
        a_label="ticket",
        b_label="dense",
    )
    first.numbers["early_stop_steps"] = early
    return [
        first,
        paired_verdict(
            f"winning tickets beat the same masks with a fresh random init at {band}",
            ticket,
            branch("reinit"),
            a_label="ticket",
            b_label="random reinit",
        ),
        paired_verdict(
            f"winning tickets beat random masks with the same layer densities at {band}",
            ticket,
            branch("randmask"),
            a_label="ticket",
            b_label="random mask",
        ),
    ]


FINDING = register_finding(
    Finding(
        "lottery-ticket",
        "Frankle & Carbin 2019 (lottery ticket), survey (seed 004)",
        "IMP winning tickets at 10-20 % density match or beat the dense LeNet-300-100 and beat the same mask "
        "with random reinit and a random mask with the same layer densities; they early-stop sooner.",
        study,
        judge,
        protocol=Protocol(
            data="mnist5k (4,000 train incl. 10 % val / 1,000 test)",
            model="LeNet-300-100",
            budget="10 epochs Adam 1.2e-3 batch 60; IMP 20 %/level x 10, rewind to init; branches at levels 8-10",
            n=8,
            claim="ticket >= dense (non-inferiority, 0.5 pp); ticket > random reinit; ticket > random mask",
            margin=f"{ACC_MARGIN * 100:g} pp",
            expected_sd=1.0,
            sd_source="guess (no pilot): seed-to-seed sd of LeNet-300-100 on 4k MNIST images",
        ),
        paper_study=paper_study,
        published="LeNet-300-100/MNIST: winning tickets at 3.6 % of the weights reach the dense accuracy",
    )
)
