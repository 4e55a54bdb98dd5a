"""``imp``: iterative magnitude pruning with rewinding (lottery tickets), and its ablation branches."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig, MethodKind, Planner
from prunezoo.methods.common import REINIT_SEED_OFFSET, load_masks, masks_once, one_result, prune_options
from prunezoo.methods.registry import register_method_kind


class BranchConfig(BaseModel):
    """An ablation branch of an IMP method, run as its own job from the pruned levels.

    kinds: ``random-reinit`` (same mask, fresh random init), ``random-mask`` (random mask with the
    same per-layer densities, rewound to init), ``rewind`` (same mask, weights from step
    ``rewind_step`` of the dense trajectory), ``finetune`` (same mask, fine-tune the previous
    level's trained weights instead of rewinding).
    """

    model_config = STRICT
    name: str = Field(min_length=1)  # a label only: jobs re-validate it as "<method>/<branch>"
    kind: Literal["random-reinit", "random-mask", "rewind", "finetune"]
    levels: list[int] = Field(default_factory=list, description="IMP levels to branch from; empty = all")
    rewind_step: int = Field(0, ge=0)


# schedules.iterative.ResetMode's values (that module imports torch; this one stays light for `prunezoo list`);
# tests/test_method_kinds.py checks they match.
RESET_MODES = ("rewind-init", "rewind", "lr-rewind", "finetune", "reinit")


class IMPConfig(MethodConfig):
    kind: Literal["imp"]
    levels: int = Field(0, ge=0, description="number of pruning levels")
    fraction: float = Field(0.2, gt=0, lt=1, description="fraction of remaining weights pruned per level")
    reset: Literal["rewind-init", "rewind", "lr-rewind", "finetune", "reinit"] = Field(
        "rewind-init",
        description="after each level: rewind to init or to rewind_step, rewind the LR, fine-tune, or re-initialise",
    )
    rewind_step: int = Field(0, ge=0)
    branches: list[BranchConfig] = Field(default_factory=list, description="ablation branches")


@register_method_kind
class IMP(MethodKind):
    """Iterative magnitude pruning: train, prune ``fraction`` of the remaining weights, reset, ``levels`` times.

    ``reset``: rewind to init (lottery tickets), to step ``rewind_step``, or fine-tune. ``branches``
    run ablations (random-reinit, random-mask, rewind, finetune) from chosen levels as their own jobs.
    """

    name = "imp"
    Config = IMPConfig
    has_target = False
    levelled = True
    takes_pattern = True
    job_kinds = ("branch",)

    def validate(self, method: MethodConfig) -> None:
        if method.levels < 1:
            raise ValueError("method kind 'imp' needs levels >= 1")
        for b in method.branches:
            bad = [lv for lv in b.levels if not 1 <= lv <= method.levels]
            if bad:
                raise ValueError(f"branch {b.name!r}: levels {bad} outside 1..{method.levels}")

    def check_pattern(self, method: MethodConfig) -> None:
        n, m = (int(v) for v in method.pattern.split(":"))
        need = math.ceil(math.log(n / m) / math.log(1.0 - method.fraction) - 1e-9)
        if method.levels != need:
            raise ValueError(
                f"pattern {method.pattern}: imp with fraction {method.fraction} reaches exactly "
                f"{method.pattern} at level {need}; set levels: {need}"
            )
        if any(b.kind == "random-mask" for b in method.branches):
            raise ValueError(f"pattern {method.pattern}: a 'random-mask' branch would break the pattern")

    def plan(self, method: MethodConfig, p: Planner) -> None:
        imp = p.add("imp", method.name, method.name, {"method": p.spec, "finetune": p.finetune})
        for b in method.branches:
            for level in b.levels or range(1, method.levels + 1):
                bspec = b.model_dump(mode="json", exclude_defaults=True, exclude={"name", "levels"})
                p.add(
                    "branch",
                    f"{method.name}/{b.name}",
                    f"{method.name}/{b.name}@L{level}",
                    {"branch": bspec, "level": level, "parent": imp.id, "finetune": p.finetune},
                    (imp.id,),
                )

    bench_fraction: ClassVar[float] = 0.5  # bench suites: levels 1..5 are exactly compression 2..32

    def operating_points(self, method: dict, compressions: list[float]) -> dict:
        # enough levels (pruning ``fraction`` each) to reach the largest compression
        fraction = method.get("fraction", self.bench_fraction)
        levels = method.get("levels", math.ceil(math.log(max(compressions)) / -math.log(1 - fraction) - 1e-9))
        return {**method, "fraction": fraction, "levels": levels}

    def job_count(self, method: MethodConfig) -> int:
        return 1 + sum(len(b.levels) or method.levels for b in method.branches)

    def uses_finetune(self, method: MethodConfig) -> bool:
        return method.reset == "finetune" or any(b.kind == "finetune" for b in method.branches)

    def densities(self, method: MethodConfig) -> list[float]:
        return [(1 - method.fraction) ** method.levels]

    def runners(self) -> dict:
        return {"imp": self.run, "branch": self.run_branch}

    def run(self, ctx, job: dict) -> dict:
        from prunezoo.schedules import IterativeSchedule, ResetMode, run_iterative

        method = ctx.method(job["method"])
        model = ctx.build_model()
        schedule = IterativeSchedule(method.levels, method.fraction, ResetMode(method.reset), method.rewind_step)
        levels = run_iterative(
            model,
            lambda m, cbs, ft: ctx.trainer(m, cbs, ft),
            schedule,
            criterion=method.criterion,
            scheme=method.scheme,
            seed=ctx.seed,
            workdir=ctx.directory,
            initial_masks=ctx.start_masks(model, method),
            **prune_options(method),
        )
        out: dict = {"rows": [], "histories": {}, "layers": {}}

        def samples(cfg) -> int:
            if cfg.steps is not None:
                return cfg.steps * cfg.batch_size
            return cfg.epochs * math.ceil(len(ctx.splits.train) / cfg.batch_size) * cfg.batch_size

        # Levels are trained at fixed masks, so their FLOPs follow from density (resumed levels ran no counter).
        cumulative = 0.0
        for res in levels:
            cfg = ctx.finetune if res.level > 0 and method.reset == "finetune" else ctx.training
            cumulative += 3.0 * ctx.row(res.masks, {})["flops_sparse"] * samples(cfg)
            if res.level == 0:
                continue
            suffix = f"/L{res.level:02d}"
            row = ctx.row(res.masks, res.final, kind="imp", level=res.level, target_sparsity=round(1 - res.density, 6))
            row["train_flops"] = cumulative
            out["rows"].append({"suffix": suffix, **row})
            out["histories"][suffix] = res.history
            out["layers"][suffix] = res.masks.layer_densities()
        return out

    def run_branch(self, ctx, job: dict) -> dict:
        from prunezoo.pruning import prune
        from prunezoo.training.callbacks import EnforceMasks, SnapshotAtStep, StopAtStep
        from prunezoo.training.checkpoint import load_state, save_state

        branch = BranchConfig.model_validate({"name": job["method"], **ctx.spec["branch"]})
        level = ctx.spec["level"]
        parent = ctx.root / ctx.spec["parent"]
        ticket = load_masks(parent / f"level_{level:02d}" / "masks.safetensors")
        start_step, finetune = 0, False
        if branch.kind == "random-reinit":
            model, masks = ctx.build_model(ctx.seed + REINIT_SEED_OFFSET), ticket
        elif branch.kind == "random-mask":
            model = ctx.build_model()
            masks = masks_once(
                ctx.directory / "masks.safetensors",
                lambda: prune(
                    model,
                    ticket.density(),
                    criterion="random",
                    scheme="explicit",
                    densities=ticket.layer_densities(),
                    seed=ctx.seed + level,
                ),
            )
        elif branch.kind == "rewind":
            model, masks, start_step = ctx.build_model(), ticket, branch.rewind_step
            if start_step > 0:
                snap = SnapshotAtStep(start_step, ctx.directory / "rewind.safetensors")
                if not snap.path.exists():
                    ctx.trainer(model, [snap, StopAtStep(start_step)]).fit()
                model.load_state_dict(load_state(snap.path))
        else:  # finetune: the previous level's trained weights under this level's mask
            model, masks, finetune = ctx.build_model(), ticket, True
            model.load_state_dict(load_state(parent / f"level_{level - 1:02d}" / "final.safetensors"))
        masks.apply(model)
        history = ctx.fit(ctx.trainer(model, [EnforceMasks(masks)], finetune=finetune), start_step=start_step)
        save_state(ctx.directory / "final.safetensors", model.state_dict())
        row = ctx.row(masks, history[-1], kind="branch", level=level, target_sparsity=round(ticket.sparsity(), 6))
        return one_result(row, history, masks)
