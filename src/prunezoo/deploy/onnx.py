"""ONNX export of a pruned model, verified with onnxruntime (optional extra: ``pip install 'prunezoo[onnx]'``).

:func:`export_onnx` exports a plain inference copy of the model (the caller's model is not touched):
``torch.nn.utils.prune`` and ``torch.nn.utils.parametrize`` reparametrisations removed, prunezoo's
reparametrised layers (STR, edge-popup, SR-STE, variational dropout) squashed to plain layers, ``masks``
applied, optionally the all-zero channels removed (``compact=True``, :func:`prunezoo.structured.compact_zero_channels`),
eval mode. The file is written atomically and only after onnxruntime's output on the example input (and,
with a dynamic batch, on a batch of another size) matched PyTorch's.

Exporter: the TorchScript exporter (``torch.onnx.export(..., dynamo=False)``) by default — it needs only
``onnx``, runs in well under a second and handles a batch-1 example with a dynamic batch axis; torch
marks it deprecated, so ``exporter="dynamo"`` (the ``torch.export`` path, which also needs ``onnxscript``)
is available and verified the same way. Pruned weights stay exact zeros in the file's initializers
(dense ONNX kernels: the file is as large as the dense model's, the zeros compress well).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from prunezoo.errors import ConfigError
from prunezoo.reparam import (
    edge_popup_layers,
    from_variational,
    squash_edge_popup,
    squash_str,
    str_layers,
    vd_layers,
)
from prunezoo.reparam.srste import squash_srste, srste_layers
from prunezoo.sparsity import MaskSet
from prunezoo.sparsity.torch_prune import masks_from_torch_prune
from prunezoo.structured import compact_zero_channels
from prunezoo.utils.io import atomic_path

EXPORTERS = ("torchscript", "dynamo")
INSTALL_HINT = "pip install 'prunezoo[onnx]' (onnx and onnxruntime)"


class OnnxVerificationError(RuntimeError):
    """onnxruntime's output on the exported file differs from PyTorch's (nothing was written)."""


def onnx_available() -> bool:
    """Whether ``onnx`` and ``onnxruntime`` can be imported (the ``onnx`` extra is installed)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def require_onnx() -> None:
    """Raise :class:`ImportError` naming the pip command when the ``onnx`` extra is missing."""
    if not onnx_available():
        raise ImportError(f"ONNX export needs onnx and onnxruntime: {INSTALL_HINT}")


@torch.no_grad()
def inference_copy(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor] | None = None,
    *,
    compact: bool = False,
    example_input: torch.Tensor | None = None,
) -> nn.Module:
    """A plain, eval-mode copy of ``model`` computing what the pruned model computes (``model`` untouched):
    reparametrisations removed or squashed, ``masks`` applied, zero channels removed if ``compact``."""
    out = copy.deepcopy(model)
    masks_from_torch_prune(out, remove=True)  # torch-prune masks are baked into plain weights
    for module in out.modules():
        for name in list(getattr(module, "parametrizations", {}) or {}):
            torch.nn.utils.parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    for layers, squash in (
        (str_layers, squash_str),
        (edge_popup_layers, squash_edge_popup),
        (srste_layers, squash_srste),
    ):
        if layers(out):
            squash(out)
    if vd_layers(out):
        out = from_variational(out)[0]
    if masks is not None:
        MaskSet(masks).apply(out)
    out.eval()
    if compact:
        if example_input is None:
            raise ConfigError("example_input", "compact=True needs an example input (to trace the model)")
        compact_zero_channels(out, example_input)
    return out


def _outputs(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)) and all(isinstance(v, torch.Tensor) for v in value):
        return list(value)
    raise ConfigError("model", f"ONNX export supports a tensor or a tuple of tensors as output, got {type(value)}")


def _check(session, model: nn.Module, x: torch.Tensor, rtol: float, atol: float) -> float:
    """Largest |onnxruntime - torch| over the outputs on ``x``; raises if any is outside rtol/atol."""
    expected = [t.detach().cpu().float().numpy() for t in _outputs(model(x))]
    got = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})
    if len(got) != len(expected):
        raise OnnxVerificationError(f"onnxruntime returned {len(got)} outputs, PyTorch {len(expected)}")
    worst = 0.0
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if g.shape != e.shape:
            raise OnnxVerificationError(f"output {i}: onnxruntime shape {g.shape}, PyTorch {e.shape} (batch {len(x)})")
        diff = abs(g.astype("float64") - e.astype("float64"))
        worst = max(worst, float(diff.max(initial=0.0)))
        bad = diff > atol + rtol * abs(e.astype("float64"))
        if bad.any():
            raise OnnxVerificationError(
                f"output {i}: onnxruntime differs from PyTorch at {int(bad.sum())} of {bad.size} values "
                f"(max |diff| {worst:.3g}, rtol={rtol}, atol={atol}, batch {len(x)})"
            )
    return worst


def initializer_sparsity(path: str | Path) -> dict[str, float]:
    """Fraction of exact zeros among the ONNX file's weight initializers (rank >= 2: Conv/Gemm/MatMul weights)."""
    import onnx
    from onnx import numpy_helper

    zeros = total = 0
    for init in onnx.load(str(path)).graph.initializer:
        if len(init.dims) >= 2:
            arr = numpy_helper.to_array(init)
            zeros += int((arr == 0).sum())
            total += int(arr.size)
    return {"weight_zeros": zeros, "weight_numel": total, "weight_sparsity": zeros / total if total else 0.0}


def export_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | Path,
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
    compact: bool = False,
    opset: int | None = None,
    dynamic_batch: bool = True,
    exporter: str = "torchscript",
    rtol: float = 1e-4,
    atol: float = 1e-4,
) -> dict:
    """Export the pruned ``model`` to the ONNX file ``path``, verified with onnxruntime; returns a record.

    ``example_input``: one input batch (its shape is the exported input shape; ``dynamic_batch`` makes
    dim 0 free). ``masks`` are applied to the exported copy; ``compact`` removes all-zero output channels
    first (structured pruning: a smaller dense model). ``opset``: the ONNX opset (exporter's default if
    None). Raises :class:`OnnxVerificationError` (writing nothing) when onnxruntime's outputs differ from
    PyTorch's beyond ``rtol``/``atol``, :class:`ImportError` when the ``onnx`` extra is missing.
    """
    require_onnx()
    import onnx
    import onnxruntime as ort

    if exporter not in EXPORTERS:
        raise ConfigError("exporter", f"unknown {exporter!r}; choose from {list(EXPORTERS)}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() < 1 or len(example_input) < 1:
        raise ConfigError("example_input", "must be a tensor holding a batch of at least one input")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 7):
        raise ConfigError("opset", f"must be an ONNX opset version (an integer >= 7), got {opset!r}")
    path = Path(path)
    plain = inference_copy(model, masks, compact=compact, example_input=example_input)
    kwargs: dict = {"input_names": ["input"], "output_names": None, "opset_version": opset}
    with torch.no_grad():
        n_out = len(_outputs(plain(example_input)))
    kwargs["output_names"] = ["output"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
    if exporter == "torchscript":
        kwargs["dynamo"] = False
        if dynamic_batch:
            kwargs["dynamic_axes"] = {n: {0: "batch"} for n in ["input", *kwargs["output_names"]]}
    else:
        kwargs.update(dynamo=True, external_data=False, verbose=False)
        if dynamic_batch:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim.DYNAMIC},)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            # the TorchScript exporter is chosen on purpose (see the module docstring)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            torch.onnx.export(plain, (example_input,), str(tmp), **kwargs)
        onnx.checker.check_model(str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        with torch.no_grad():
            worst = _check(session, plain, example_input, rtol, atol)
            if dynamic_batch:  # the batch axis really is free: a batch of another size runs and matches too
                worst = max(worst, _check(session, plain, torch.cat([example_input, example_input[:1]]), rtol, atol))
        record = {
            "path": str(path),
            "exporter": exporter,
            "opset": max(o.version for o in onnx.load(str(tmp)).opset_import if o.domain in ("", "ai.onnx")),
            "dynamic_batch": dynamic_batch,
            "input_shape": list(example_input.shape),
            "compact": compact,
            "max_abs_diff": worst,
            "rtol": rtol,
            "atol": atol,
            "parameters": sum(p.numel() for p in plain.parameters()),
            **initializer_sparsity(tmp),
        }
    record["bytes"] = path.stat().st_size
    return record
