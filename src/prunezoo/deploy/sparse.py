"""Sparse inference export: masked Linear/Conv2d layers onto sparse kernels where that is measured faster.

A masked model runs the dense kernels, so its zeros save FLOPs on paper only. :func:`sparse_export`
returns an inference copy whose pruned layers multiply with the best available sparse kernel:

- CPU, any mask: the weight in CSR (``torch.sparse.mm``, MKL sparse BLAS in the standard wheels);
  BSR (4×4 blocks) is a candidate too, but only when the mask is block-shaped (stored values at
  most 1.25× the nonzeros) — on unstructured masks it stores mostly zeros;
- CUDA (compute capability ≥ 8.0) with a weight that is exactly 2:4 along its input and an fp16/bf16
  model: ``torch.sparse.to_sparse_semi_structured`` (sparse tensor cores, via cuSPARSELt/CUTLASS).

Convolutions (2-D, ``groups=1``, zero padding) run as im2col (``unfold``) + sparse matmul.

Each candidate is timed against the dense layer on the input the layer sees for ``example_input``
(alternating pairs, median ratio, like :func:`prunezoo.structured.compare_latency`), with the
thread count it will be deployed with; a layer is converted only when its kernel beats dense by
``min_speedup`` — the fallback to dense is per layer. The choice, the timings and the reason are
recorded in ``exported.deploy_report`` (also returned by :func:`deploy_report`). Finally the
exported output is checked against the masked dense model on ``example_input``.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from prunezoo.sparsity.masks import MaskSet
from prunezoo.sparsity.nm import satisfies

CSR, BSR, SEMI, DENSE = "csr", "bsr", "semi-structured", "dense"
BSR_BLOCK = 4


@contextmanager
def _quiet():
    # torch warns that sparse CSR/BSR support is "beta" on every conversion.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*beta.*")
        warnings.filterwarnings("ignore", message=".*semi.structured.*")
        yield


class SparseLinear(nn.Module):
    """``nn.Linear`` whose weight is a sparse CSR/BSR tensor (or 2:4 semi-structured on CUDA)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, fmt: str):
        super().__init__()
        self.in_features, self.out_features, self.format = weight.shape[1], weight.shape[0], fmt
        with _quiet():
            self.weight = nn.Parameter(_to_format(weight.detach(), fmt), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.format == SEMI:  # cuSPARSELt/CUTLASS 2:4 kernels take 2-D inputs
            return F.linear(flat, self.weight, self.bias).reshape(*x.shape[:-1], self.out_features)
        if flat.shape[0] == 1 and self.format == CSR:
            # One row: sparse matrix-vector (MKL's SpMV), several times faster than a 1-column SpMM.
            v = flat[0]
            out = torch.mv(self.weight, v) if self.bias is None else torch.addmv(self.bias, self.weight, v)
            return out.reshape(*x.shape[:-1], self.out_features)
        out = _spmm(self.weight, flat.t(), self.format).t()  # (W x^T)^T: sparse operand first
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, format={self.format}"


class SparseConv2d(nn.Module):
    """``nn.Conv2d`` (groups=1, zero padding) as im2col + sparse matmul with a CSR/BSR weight."""

    def __init__(self, conv: nn.Conv2d, fmt: str):
        super().__init__()
        self.out_channels, self.format = conv.out_channels, fmt
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        with _quiet():
            self.weight = nn.Parameter(
                _to_format(conv.weight.detach().reshape(conv.out_channels, -1), fmt), requires_grad=False
            )
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        # im2col as one strided view and one copy, straight into the (C*kh*kw, N*oh*ow) layout the
        # sparse matmul needs; F.unfold + transpose measured several times slower. NCHW first:
        # permuting a channels-last input into this layout is cache-hostile.
        x = F.pad(x.contiguous(), (self.padding[1], self.padding[1], self.padding[0], self.padding[0]))
        patches = x.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
        n, c, oh, ow = patches.shape[:4]
        cols = patches.permute(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow)
        out = _spmm(self.weight, cols, self.format).reshape(self.out_channels, n, oh, ow).transpose(0, 1)
        if self.bias is not None:
            out = out + self.bias.reshape(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return f"out_channels={self.out_channels}, kernel_size={self.kernel_size}, format={self.format}"


def _to_format(weight: torch.Tensor, fmt: str) -> torch.Tensor:
    if fmt == CSR:
        return weight.to_sparse_csr()
    if fmt == BSR:
        return weight.to_sparse_bsr((BSR_BLOCK, BSR_BLOCK))
    if fmt == SEMI:
        from torch.sparse import to_sparse_semi_structured

        return to_sparse_semi_structured(weight)
    raise ValueError(f"unknown sparse format {fmt!r}")


def _spmm(weight: torch.Tensor, dense: torch.Tensor, fmt: str) -> torch.Tensor:
    return torch.sparse.mm(weight, dense) if fmt == CSR else weight @ dense


# -- candidates ------------------------------------------------------------------------------------
def _block_fill(weight: torch.Tensor) -> float:
    """Stored values of a 4×4 BSR copy per nonzero (1.0 = the mask is perfectly block-shaped)."""
    w = weight.reshape(weight.shape[0], -1)
    r, c = w.shape
    if r % BSR_BLOCK or c % BSR_BLOCK:
        return math.inf
    blocks = (w != 0).reshape(r // BSR_BLOCK, BSR_BLOCK, c // BSR_BLOCK, BSR_BLOCK).any(3).any(1)
    return int(blocks.sum()) * BSR_BLOCK * BSR_BLOCK / max(int((w != 0).sum()), 1)


def semi_structured_available(device: torch.device | str) -> str | None:
    """``None`` if 2:4 semi-structured kernels can run on ``device``, else why not."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return "2:4 semi-structured kernels need a CUDA GPU"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return "2:4 semi-structured kernels need compute capability >= 8.0 (Ampere or newer)"
    try:
        from torch.sparse import to_sparse_semi_structured  # noqa: F401
    except ImportError:
        return "this torch has no torch.sparse.to_sparse_semi_structured"
    return None


def _candidates(module: nn.Module, weight: torch.Tensor) -> tuple[list[str], str]:
    """Formats worth timing for one layer, and a reason when there are none."""
    if isinstance(module, nn.Conv2d) and (
        module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str)
    ):
        return [], "conv with groups/padding mode the im2col path does not cover"
    if weight.device.type == "cuda":
        if not isinstance(module, nn.Linear):
            return [], "semi-structured export covers Linear layers only"
        if not satisfies(weight, "2:4"):
            return [], "not 2:4 (CUDA export is semi-structured 2:4 only)"
        if weight.dtype not in (torch.float16, torch.bfloat16):
            return [], "semi-structured kernels need a float16/bfloat16 weight"
        why = semi_structured_available(weight.device)
        return ([SEMI], "") if why is None else ([], why)
    if weight.device.type != "cpu":
        return [], f"no sparse kernel for device {weight.device.type}"
    fmts = [CSR]
    if _block_fill(weight) <= 1.25:
        fmts.append(BSR)
    return fmts, ""


def _convert(module: nn.Module, fmt: str) -> nn.Module:
    if isinstance(module, nn.Linear):
        return SparseLinear(module.weight, module.bias, fmt)
    return SparseConv2d(module, fmt)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paired_speedup(
    dense: nn.Module, sparse: nn.Module, x: torch.Tensor, *, repeats: int = 15, warmup: int = 2
) -> dict[str, float]:
    """Dense and sparse forwards timed back to back in alternating order; median ratio dense/sparse.

    ``cpu_speedup``: the same from the calling thread's CPU time — with one intra-op thread all the
    work runs there, so it leaves out the time the OS gave other processes (shared machines)."""
    device = x.device
    d_ms, s_ms, ratio, cpu_ratio = [], [], [], []
    with torch.inference_mode():
        for _ in range(warmup):
            dense(x)
            sparse(x)
        for i in range(repeats):
            pair = []
            for f in (sparse, dense) if i % 2 else (dense, sparse):
                _sync(device)
                t0, c0 = time.perf_counter(), time.thread_time()
                f(x)
                _sync(device)
                pair.append(((time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3))
            (d, dc), (s, sc) = (pair[1], pair[0]) if i % 2 else (pair[0], pair[1])
            d_ms.append(d)
            s_ms.append(s)
            ratio.append(d / max(s, 1e-9))
            cpu_ratio.append(dc / max(sc, 1e-9))
    return {
        "dense_ms": statistics.median(d_ms),
        "sparse_ms": statistics.median(s_ms),
        "speedup": statistics.median(ratio),
        "cpu_speedup": statistics.median(cpu_ratio),
    }


def _layer_inputs(model: nn.Module, example_input: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [
        modules[n].register_forward_pre_hook(lambda _m, args, n=n: seen.setdefault(n, args[0].detach().clone()))
        for n in names
    ]
    try:
        with torch.inference_mode():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return seen


# -- export ----------------------------------------------------------------------------------------
def sparse_export(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor] | None = None,
    *,
    example_input: torch.Tensor,
    threads: int | None = 1,
    min_speedup: float = 1.1,
    repeats: int = 15,
    formats: tuple[str, ...] | None = None,
    check: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    model_fallback: bool = True,
) -> nn.Module:
    """An eval-mode inference copy of ``model`` with masked Linear/Conv2d layers on sparse kernels.

    ``masks`` (a MaskSet or ``{weight name: bool}``) are applied to the copy first; without them the
    weights' own zeros are the sparsity. Each layer with zeros is timed dense vs every candidate
    format on its input for ``example_input`` with ``threads`` intra-op threads (``None``: the current
    setting) and converted to the fastest one only if it beats dense by more than ``min_speedup`` (a
    10 % margin by default, so timing noise cannot pick a kernel that is not really faster);
    ``formats`` restricts the candidates (e.g. ``("csr",)``; a format listed here is used even when
    slower if ``min_speedup=0``). The copy's ``deploy_report`` holds, per layer: ``format``,
    ``density``, ``dense_ms``/``sparse_ms``/``speedup`` when timed, and ``reason`` for dense ones.
    With ``model_fallback`` the whole export is then timed against the dense copy the same way and,
    if it is not faster end to end (layer timings do not add up exactly: caches, layouts, threads),
    every layer goes back to dense; ``deploy_report["model"]`` records that check.
    With ``check`` the output on ``example_input`` must match the masked dense copy (``rtol``/``atol``;
    default 1e-5, 1e-2 for float16/bfloat16 models).
    """
    if not (isinstance(min_speedup, (int, float)) and min_speedup >= 0):
        raise ValueError(f"min_speedup must be a number >= 0, got {min_speedup!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    bad = sorted(set(formats or ()) - {CSR, BSR, SEMI})
    if bad:
        raise ValueError(f"unknown formats {bad}; known: {[CSR, BSR, SEMI]}")
    reference = copy.deepcopy(model).eval()
    if masks is not None:
        MaskSet(masks).apply(reference)
    out = copy.deepcopy(reference)
    layers = {n: m for n, m in out.named_modules() if type(m) in (nn.Linear, nn.Conv2d)}
    inputs = _layer_inputs(out, example_input, list(layers))
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    report: dict[str, dict] = {}
    converted: dict[str, nn.Module] = {}  # name -> the dense module it replaced
    model_check: dict | None = None
    try:
        for name, module in layers.items():
            w = module.weight.detach()
            density = float(torch.count_nonzero(w)) / max(w.numel(), 1)
            entry: dict = {
                "kind": type(module).__name__,
                "shape": list(w.shape),
                "density": round(density, 6),
                "format": DENSE,
            }
            report[f"{name}.weight"] = entry
            if name not in inputs:
                entry["reason"] = "not called on the example input"
                continue
            if density >= 1.0:
                entry["reason"] = "no zeros"
                continue
            fmts, reason = _candidates(module, w)
            if formats is not None:
                fmts = [f for f in fmts if f in formats]
            if not fmts:
                entry["reason"] = reason or "no candidate format allowed"
                continue
            best, best_t = None, None
            for fmt in fmts:
                try:
                    cand = _convert(module, fmt)
                    t = paired_speedup(module, cand, inputs[name], repeats=repeats)
                except (RuntimeError, NotImplementedError) as err:  # kernel missing for this dtype/shape
                    entry.setdefault("errors", {})[fmt] = str(err).splitlines()[0][:200]
                    continue
                entry.setdefault("timings", {})[fmt] = {k: round(v, 5) for k, v in t.items()}
                if best_t is None or t["speedup"] > best_t["speedup"]:
                    best, best_t = cand, t
            if best is None:
                entry["reason"] = "every sparse kernel failed"
                continue
            entry.update({k: round(v, 5) for k, v in best_t.items()})
            if best_t["speedup"] > min_speedup:
                entry["format"] = best.format
                _replace(out, name, best)
                converted[name] = module
            else:
                entry["reason"] = f"sparse {best.format} measured {best_t['speedup']:.2f}x of dense (fallback)"
        if model_fallback and converted:
            t = paired_speedup(reference, out, example_input, repeats=repeats)
            model_check = {k: round(v, 5) for k, v in t.items()} | {"fallback": t["speedup"] < 1.0}
            if t["speedup"] < 1.0:  # slower end to end: the whole model goes back to dense kernels
                for name, module in converted.items():
                    _replace(out, name, module)
                    entry = report[f"{name}.weight"]
                    entry["reason"] = f"model-level fallback: the export measured {t['speedup']:.2f}x end to end"
                    entry["format"] = DENSE
    finally:
        torch.set_num_threads(old_threads)
    out.deploy_report = {
        "threads": threads if threads is not None else old_threads,
        "min_speedup": min_speedup,
        "layers": report,
        "model": model_check,
    }
    out.eval().requires_grad_(False)  # an inference artifact: sparse weights have no autograd support anyway
    if check:
        low = example_input.dtype in (torch.float16, torch.bfloat16)
        tol = 1e-2 if low else 1e-5
        _check_equal(reference, out, example_input, tol if rtol is None else rtol, tol if atol is None else atol)
    return out


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def _check_equal(reference: nn.Module, exported: nn.Module, x: torch.Tensor, rtol: float, atol: float) -> None:
    with torch.inference_mode():
        a, b = reference(x), exported(x)
    if not torch.allclose(a.float(), b.float(), rtol=rtol, atol=atol):
        diff = float((a.float() - b.float()).abs().max())
        raise RuntimeError(f"sparse export changed the output (max abs diff {diff:.3g}; rtol={rtol}, atol={atol})")


def deploy_report(model: nn.Module) -> dict:
    """The per-layer record of :func:`sparse_export` (format chosen, timings, fallback reasons)."""
    report = getattr(model, "deploy_report", None)
    if report is None:
        raise ValueError("model was not produced by sparse_export (no deploy_report)")
    return report


def sparse_layer_count(model: nn.Module) -> int:
    return sum(isinstance(m, (SparseLinear, SparseConv2d)) for m in model.modules())
