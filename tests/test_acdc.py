"""AC/DC and AC/DC++ (Peste et al. 2021; Kuznedelev et al. 2023): phase plan, masks, variants, resume."""

import pytest
import torch

from prunezoo.data import load_dataset
from prunezoo.models import build_model
from prunezoo.schedules import ACDC, acdc_phases
from prunezoo.sparsity import prunable_parameters
from prunezoo.sparsity.topk import keep_count
from prunezoo.training import Callback, Trainer, TrainingConfig, seed_everything

REFERENCE_100 = (
    [(0, 10, "warmup")]
    + [p for s in range(10, 70, 10) for p in ((s, s + 5, "compressed"), (s + 5, s + 10, "decompressed"))]
    + [(70, 75, "compressed"), (75, 85, "decompressed"), (85, 100, "final")]
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(data, seed=0):
    seed_everything(seed)
    return build_model("mlp", num_classes=10, input_shape=data.input_shape, hidden=[32])


def _cfg(epochs):
    return TrainingConfig(epochs=epochs, batch_size=64, lr=0.05)


def test_reference_100_epoch_layout():
    assert acdc_phases(100) == REFERENCE_100
    # explicit lengths give the same plan
    assert (
        acdc_phases(100, warmup_epochs=10, compressed_epochs=5, decompressed_epochs=5, final_sparse_epochs=15)
        == REFERENCE_100
    )
    # proportional by default: 20 epochs is the reference scaled by 1/5
    assert acdc_phases(20) == [(s / 5, e / 5, k) for s, e, k in REFERENCE_100]


@pytest.mark.parametrize("factor", [2.5, 5, 10])
def test_acdc_plus_plus_more_phases_of_same_length(factor):
    total = 100 * factor
    phases = acdc_phases(total, scale_with_epochs=True)
    kinds = [k for _, _, k in phases]
    assert phases[0] == (0, total / 10, "warmup") and phases[-1] == (total * 0.85, total, "final")
    assert all(e - s == 5 for s, e, k in phases if k == "compressed")
    assert all(e - s == 5 for s, e, k in phases[1:-2])  # all but the lengthened last dense phase
    assert kinds.count("compressed") == int((total * 0.75) // 10) > 7
    assert all(a[1] == b[0] for a, b in zip(phases, phases[1:]))  # contiguous


class Probe(Callback):
    """After the schedule: per step, prunable nnz, phase kind, and what happens to pruned weights."""

    def __init__(self, sched):
        self.sched, self.rows, self.at_decompress, self.momentum_pruned = sched, [], [], []

    def _weights(self, trainer):
        return prunable_parameters(trainer.model)

    def on_step_begin(self, trainer, step):
        kind = self.sched.phase_steps[self.sched.phase_at(step)][2]
        if kind == "decompressed" and self.sched.phase_steps[self.sched.phase_at(step)][0] == step:
            prev = self.sched.previous_compressed
            w = self._weights(trainer)
            self.at_decompress.append((step, {n: w[n][~prev[n]].clone() for n in prev}, prev.clone()))
        if kind in ("compressed", "final") and self.sched.reset_momentum:
            for n, p in self._weights(trainer).items():
                buf = trainer.optimizer.state[p].get("momentum_buffer")
                if buf is not None:
                    self.momentum_pruned.append(float(buf[~self.sched.masks[n]].abs().max()))

    def on_step_end(self, trainer, step, loss):
        w = self._weights(trainer)
        nnz = sum(int((p != 0).sum()) for p in w.values())
        self.rows.append(
            (
                step,
                self.sched.phase_steps[self.sched.phase_at(step)][2],
                nnz,
                {n: (p != 0).clone() for n, p in w.items()},
            )
        )


def _run(digits, sched, epochs=20):
    model = _model(digits)
    probe = Probe(sched)
    trainer = Trainer(model, digits.train, _cfg(epochs), callbacks=[sched, probe])
    trainer.fit()
    total = sum(p.numel() for p in prunable_parameters(model).values())
    return model, probe, trainer, total


def test_acdc_alternates_compressed_and_dense(digits):
    sched = ACDC(0.9)
    model, probe, trainer, total = _run(digits, sched)
    k = keep_count(0.1, total)
    kinds = {kind for _, kind, _, _ in probe.rows}
    assert kinds == {"warmup", "compressed", "decompressed", "final"}
    for step, kind, nnz, _ in probe.rows:
        if kind in ("compressed", "final"):
            assert nnz == k, step  # exactly the target density on every compressed step
        elif kind == "warmup":
            assert nnz > 0.9 * total
    # decompressed phases: pruned weights restart at exactly 0, and train back to nonzero values
    assert len(probe.at_decompress) == 7
    by_step = {step: nonzero for step, _, _, nonzero in probe.rows}
    for start, pruned_values, prev in probe.at_decompress:
        assert all(torch.all(v == 0) for v in pruned_values.values())
        revived = sum(int((by_step[start + 5][n] & ~prev[n]).sum()) for n in prev)
        assert revived > 0.5 * (total - k)
    # final model: target sparsity, pruned weights exactly zero
    w = prunable_parameters(model)
    assert sum(int((p != 0).sum()) for p in w.values()) == k
    assert all(torch.all(p[~sched.masks[n]] == 0) for n, p in w.items())
    # logging: mask IoU between consecutive compressed phases, zero fraction at each decompressed end
    compress = [e for e in sched.events if e["event"] == "compress"]
    assert len(compress) == 8 and compress[0]["iou"] is None and compress[-1]["kind"] == "final"
    assert all(0 < e["iou"] <= 1 for e in compress[1:]) and all(
        e["sparsity"] == pytest.approx(0.9, abs=1e-3) for e in compress
    )
    ends = [e for e in sched.events if e["event"] == "decompressed_end"]
    assert [e["step"] for e in ends] == [e for _, e, kind in sched.phase_steps if kind == "decompressed"]
    for e in ends:
        nnz = next(n for s, _, n, _ in probe.rows if s + 1 == e["step"])
        assert e["zero_fraction"] == pytest.approx(1 - nnz / total) and e["zero_fraction"] < 0.5


def test_ramp_and_sparse_decompression(digits):
    sched = ACDC(0.9, ramp=True, ramp_start=0.6, min_decompressed_sparsity=0.5, reset_momentum=True)
    _, probe, _, total = _run(digits, sched)
    compress = [e for e in sched.events if e["event"] == "compress"]
    expected = [0.6 + 0.3 * j / 7 for j in range(8)]  # linear in compressed-phase index, ending at target
    assert [e["sparsity"] for e in compress] == pytest.approx(expected, abs=1e-3)
    assert compress[-1]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    # decompressed phases keep exactly the lower sparsity, by magnitude, but the support still moves
    k_dec = keep_count(0.5, total)
    assert all(nnz == k_dec for _, kind, nnz, _ in probe.rows if kind == "decompressed")
    ends = [e for e in sched.events if e["event"] == "decompressed_end"]
    assert all(e["zero_fraction"] == pytest.approx(1 - k_dec / total) for e in ends)
    start, _, prev = probe.at_decompress[0]
    nonzero = next(nz for s, _, _, nz in probe.rows if s == start + 3)
    assert sum(int((nonzero[n] & ~prev[n]).sum()) for n in prev) > 0
    # reset_momentum: pruned weights carry no momentum through compressed phases
    assert probe.momentum_pruned and max(probe.momentum_pruned) == 0.0


def test_acdc_validation():
    with pytest.raises(ValueError):
        ACDC(0.9, min_decompressed_sparsity=0.95)
    with pytest.raises(ValueError):
        ACDC(0.9, ramp=True, ramp_start=0.95)
    with pytest.raises(ValueError):
        acdc_phases(10, warmup_epochs=6, final_sparse_epochs=5)


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch + 1 == self.epochs:
            trainer.stop_requested = True


@pytest.mark.parametrize("stop", [2, 4])  # mid compressed phase, mid decompressed phase
@pytest.mark.parametrize("sparse_decompression", [0.0, 0.5])
def test_resume_matches_uninterrupted(digits, tmp_path, stop, sparse_decompression):
    def make():  # 10 epochs: warmup [0,1), C [1,3), D [3,8), final [8,10)
        return ACDC(
            0.9,
            warmup_epochs=1,
            compressed_epochs=2,
            decompressed_epochs=2,
            final_sparse_epochs=2,
            min_decompressed_sparsity=sparse_decompression,
        )

    full_model, full = _model(digits), make()
    Trainer(full_model, digits.train, _cfg(10), callbacks=[full]).fit()
    assert [k for _, _, k in full.phases] == ["warmup", "compressed", "decompressed", "final"]

    Trainer(_model(digits), digits.train, _cfg(10), callbacks=[make(), StopAfter(stop)]).fit(
        checkpoint_dir=tmp_path / "ck"
    )
    resumed_model, resumed = _model(digits, seed=99), make()
    Trainer(resumed_model, digits.train, _cfg(10), callbacks=[resumed]).fit(resume_from=tmp_path / "ck")
    ref = full_model.state_dict()
    assert all(torch.equal(resumed_model.state_dict()[n], ref[n]) for n in ref)
    assert resumed.events == full.events  # includes the IoU with the pre-checkpoint compressed mask
