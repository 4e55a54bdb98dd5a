"""``structured``: remove whole channels of the trained dense model, fine-tune the physically smaller model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prunezoo.methods.base import STRICT, MethodConfig, MethodKind, NoOptions
from prunezoo.methods.common import one_result
from prunezoo.methods.registry import register_method_kind


class StructuredConfig(MethodConfig):
    kind: Literal["structured"]


class StructuredOptions(BaseModel):
    """structured.apply_structured's options, then prune_channels' (defaults there)."""

    model_config = STRICT
    allocation: str | None = Field(None, description="sensitivity: per-layer ratios from a scan (else uniform)")
    budget: str | None = Field(None, description="sensitivity budget: channels, flops or latency")
    scan_ratios: list[float] | None = Field(None, description="ratios each layer is pruned to alone in the scan")
    scope: str | None = Field(None, description="rank channels per layer (layer) or across layers (global)")
    ignored_layers: list[str] | None = Field(None, description="layers whose channels are never removed")
    max_layer_ratio: float | None = Field(None, description="largest fraction of one layer's channels removed")
    round_to: int | None = Field(None, description="keep channel counts multiples of this")


class SlimmingOptions(StructuredOptions):
    l1: float | None = Field(None, description="L1 weight on BN scales while fine-tuning first (default 1e-4)")


@register_method_kind
class Structured(MethodKind):
    """Remove a fraction ``sparsities`` of the channels of the trained dense model with a channel ``criterion``
    (l1, l2, fpgm, apoz, taylor, bn-scale, random, slimming, thinet, merge, or an alias such as l1-filter),
    then fine-tune the physically smaller model; rows get its measured CPU latency against dense."""

    name = "structured"
    Config = StructuredConfig
    Options = StructuredOptions
    from_dense = True
    target_unit = "channels"  # a target is the fraction of channels removed
    takes_start = False
    sparse_export = False
    sparse_export_note = "structured runs are compacted and timed already (latency_ms)"

    def check_criterion(self, criterion: str, kind: str | None = None) -> str:
        from prunezoo.structured import structured_criterion_names

        known = structured_criterion_names()  # channel criteria, slimming/thinet/merge, aliases
        if criterion not in known:
            raise ValueError(f"unknown criterion {criterion!r} for kind {self.name!r}; known: {sorted(known)}")
        return criterion

    def options_model(self, method: MethodConfig) -> type[BaseModel]:
        from prunezoo.structured.study import canonical_structured_criterion

        crit = canonical_structured_criterion(method.criterion)
        if crit in ("thinet", "merge"):
            return NoOptions
        return SlimmingOptions if crit == "slimming" else StructuredOptions

    def run(self, ctx, job: dict) -> dict:
        """Remove channels (Torch-Pruning dependency graph), fine-tune the smaller model, save it compacted,
        measure CPU latency against the dense one."""
        import copy

        from prunezoo.errors import ConfigError
        from prunezoo.models.flops import dense_flops
        from prunezoo.sparsity import prunable_parameters
        from prunezoo.structured import BatchNormL1, apply_structured, compare_latency, deploy, save_compact
        from prunezoo.structured.study import canonical_structured_criterion
        from prunezoo.training.checkpoint import load_state

        ratio = ctx.spec["sparsity"]
        method = ctx.method(job["method"], {"sparsities": [ratio]})
        # Channel surgery (Torch-Pruning's traced graph) and the latency comparison run on the CPU, the same
        # on every machine; fine-tuning runs on the job's device (the trainer moves the model there).
        model = ctx.build_model(on_device=False)
        model.load_state_dict(load_state(ctx.root / ctx.spec["parent"] / "final.safetensors"))
        example = ctx.score_batches(1)[0][0][:32].cpu()
        dense = copy.deepcopy(model)
        dense_prunable = sum(p.numel() for p in prunable_parameters(model).values())
        options = dict(method.options)
        if canonical_structured_criterion(method.criterion) == "slimming":  # BN-γ L1 fine-tune first (Liu 2017)
            ctx.fit(ctx.trainer(model, [BatchNormL1(float(options.pop("l1", 1e-4)))], finetune=True), name="slimming")
            model.cpu()
        batches = [(x.cpu(), y.cpu()) for x, y in ctx.score_batches(method.batches)]
        try:
            result = apply_structured(
                model,
                example[:1],
                ratio,
                method.criterion,
                batches=batches,
                seed=ctx.seed,
                evaluate_fn=lambda m: _batch_accuracy(m, batches),
                options=options,
            )
        except ConfigError as err:
            raise ConfigError(f"methods[{method.name}].{err.field}", str(err)[len(err.field) + 2 :]) from None
        history = ctx.fit(ctx.trainer(model, finetune=True))
        model.cpu()
        save_compact(
            model,
            ctx.directory / "compact",
            {
                "model": ctx.model_cfg.name,
                "num_classes": ctx.splits.num_classes,
                "input_shape": list(ctx.splits.input_shape),
                "options": ctx.model_cfg.options,
            },
        )
        # Deployed (BN folded, channels-last) dense and compact timed in alternating pairs, one thread.
        timing = compare_latency(deploy(dense), deploy(model), example, repeats=20, threads=1)
        nnz = sum(p.numel() for p in prunable_parameters(model).values())
        row = ctx.row(
            None,
            history[-1],
            counts=(nnz, dense_prunable, dense_flops(model, ctx.splits.input_shape)),
            kind=self.name,
            level=None,
            target_sparsity=ratio,
        )
        row.update(
            latency_ms=timing["candidate_ms"], latency_dense_ms=timing["baseline_ms"], latency_speedup=timing["speedup"]
        )
        kept = {
            f"{n}.weight" if not n.endswith("weight") else n: result.channels_after[n] / c
            for n, c in result.channels_before.items()
            if c
        }
        return {**one_result(row, history, _Densities(kept)), "structured": result.to_dict()}


class _Densities:
    """Per-layer kept-channel fractions in the place of a MaskSet's layer densities."""

    def __init__(self, densities: dict[str, float]):
        self.densities = densities

    def layer_densities(self) -> dict[str, float]:
        return self.densities


def _batch_accuracy(model, batches: list) -> float:
    """Accuracy on the scoring batches: the metric a structured sensitivity scan ranks layers by."""
    import torch

    was = model.training
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    model.train(was)
    return correct / max(sum(len(y) for _, y in batches), 1)
