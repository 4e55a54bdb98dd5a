"""Population-batched training vs the per-model loop, measured side by side in one run.

CNN-s on mnist5k (1x28x28), batch size 10, ``--models`` models (default 100), ``--steps`` optimizer
steps per model (default 30). Both sides go through the public entry points and do the same work:
build each model from its seed, train ``steps`` Adam steps on its own data order, no evaluation.

- population: ``train_population(..., steps=S, evaluate=False)`` with ``conv="stacked"`` (the
  default: members stacked along channels, channels-last grouped conv + bmm), ``conv="grouped"``
  (vmap's own grouped-convolution batching rule) and ``conv="im2col"`` (vmap, unfold + bmm);
- per-model loop: ``train_member(..., steps=S)`` (the Trainer) for each model, one after another.

Throughput is samples/s summed over all models (models x steps x batch / wall time); "per model" is
that divided by the number of models. Rounds are interleaved and the ratio is the median of the
per-round ratios, which cancels drift in machine load. Torch threads: ``--threads`` (default 2) for
both sides. Run: ``taskset -c 0,1 python benchmarks/bench_population.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prunezoo.data import load_dataset
from prunezoo.zoo.population import MemberSpec, train_member, train_population


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per model")
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--loop-models",
        type=int,
        default=None,
        help="models actually run in the per-model loop each round (default: all); its "
        "throughput is per sample, so a subset estimates the loop without its full cost",
    )
    ap.add_argument("--model", default="cnn-s")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("mnist5k")
    members = [MemberSpec(seed=s) for s in range(args.models)]
    loop_members = members[: args.loop_models or args.models]
    samples_pop = args.models * args.steps * args.batch_size
    samples_loop = len(loop_members) * args.steps * args.batch_size
    print(
        f"{args.model} on {data.name} {data.input_shape}, {args.models} models, batch {args.batch_size}, "
        f"{args.steps} steps, {torch.get_num_threads()} torch threads, {args.rounds} interleaved rounds"
    )

    def population(conv: str) -> float:
        t0 = time.perf_counter()
        train_population(
            args.model,
            {},
            data,
            members,
            epochs=1,
            batch_size=args.batch_size,
            steps=args.steps,
            evaluate=False,
            conv=conv,
        )
        return samples_pop / (time.perf_counter() - t0)

    def loop() -> float:
        t0 = time.perf_counter()
        for m in loop_members:
            train_member(
                args.model, {}, data, m, epochs=1, batch_size=args.batch_size, steps=args.steps, eval_splits=[]
            )
        return samples_loop / (time.perf_counter() - t0)

    population("im2col")  # warm-up (allocator, oneDNN primitives)
    runs: dict[str, list[float]] = {"im2col": [], "grouped": [], "stacked": [], "loop": []}
    for r in range(args.rounds):
        order = ["loop", "im2col", "grouped", "stacked"] if r % 2 == 0 else ["stacked", "grouped", "im2col", "loop"]
        for name in order:
            runs[name].append(loop() if name == "loop" else population(name))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} samples/s" for k, v in runs.items()))

    print(f"\n{'path':<28}{'samples/s (all)':>16}{'per model':>12}{'vs loop':>10}")
    loop_med = statistics.median(runs["loop"])
    for name, label in (
        ("loop", "per-model loop (Trainer)"),
        ("im2col", "population, im2col conv"),
        ("grouped", "population, vmap grouped conv"),
        ("stacked", "population, stacked (default)"),
    ):
        ratios = [a / b for a, b in zip(runs[name], runs["loop"])]
        print(
            f"{label:<28}{statistics.median(runs[name]):>16,.0f}{statistics.median(runs[name]) / args.models:>12,.1f}"
            f"{statistics.median(ratios):>9.2f}x"
        )
    best = max(("im2col", "grouped", "stacked"), key=lambda k: statistics.median(runs[k]))
    ratio = statistics.median([a / b for a, b in zip(runs[best], runs["loop"])])
    print(
        f"\npopulation ({best}) / per-model loop throughput ratio: {ratio:.2f}x (goal >= 5x on 2 cores); "
        f"loop median {loop_med:,.0f} samples/s"
    )


if __name__ == "__main__":
    main()
