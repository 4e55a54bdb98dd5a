"""``prunezoo bench``, ``published`` and ``reproduce``: fair comparisons and re-tested paper findings
(registered in :mod:`prunezoo.cli`; :mod:`prunezoo.bench` is imported inside the commands)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prunezoo.cli.common import (
    DeviceOption,
    Executor,
    ExecutorOption,
    RecordsFormatOption,
    RunsOutOption,
    TableFormat,
    WorkersOption,
    console,
    fail,
    fitted_table,
    out,
    print_records,
    records_text,
)
from prunezoo.errors import ConfigError


def published_command(
    finding: Annotated[str | None, typer.Option(help="only rows tied to this reproduce finding")] = None,
    fmt: RecordsFormatOption = "table",
) -> None:
    """List the bundled published reference results (paper, model, dataset, protocol, metric, value)."""
    from prunezoo.bench import published_results

    items = published_results(finding)
    print_records([p.model_dump(mode="json") for p in items], fmt, lambda: published_rich_table(items))


def published_rich_table(items) -> Table:
    table = Table(title="published reference results (not measured by prunezoo)")
    for col in ("paper", "model", "dataset", "protocol", "metric", "published", "note"):
        table.add_column(col, justify="right" if col == "published" else "left", overflow="fold")
    for p in items:
        table.add_row(p.paper, p.model, p.dataset, p.protocol, p.metric, p.shown, p.note)
    return table


def bench_command(
    suite: Annotated[str | None, typer.Argument(help="bundled suite name or a suite YAML file")] = None,
    seeds: Annotated[int | None, typer.Option(help="number of seeds (>= 3)")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="same comparison with 1 epoch of training/fine-tuning")
    ] = False,
    published: Annotated[bool, typer.Option("--published", help="only list the published reference results")] = False,
    list_: Annotated[bool, typer.Option("--list", help="list the bundled suites")] = False,
    out_dir: RunsOutOption = Path("runs"),
    workers: WorkersOption = None,
    force: Annotated[bool, typer.Option(help="re-run even if complete")] = False,
    device: DeviceOption = None,
    fmt: RecordsFormatOption = "table",
) -> None:
    """Fair comparison of pruning methods: shared dense checkpoint, data and fine-tuning budget;
    compressions 2..32; >= 3 seeds with mean ± std and 95% CIs; random and magnitude baselines always
    included; CSV + HTML report with the published results in a separate table."""
    from prunezoo.bench import build_study, bundled_suites, load_suite, quick_suite, run_bench

    if published:
        published_command(None, fmt)
        return
    if list_ or suite is None:
        suites = [{"suite": name, "description": load_suite(name).description} for name in bundled_suites()]

        def table() -> Table:
            table = Table(title="bundled benchmark suites")
            table.add_column("suite")
            table.add_column("description")
            for rec in suites:
                table.add_row(rec["suite"], rec["description"])
            return table

        print_records(suites, fmt, table)
        if suite is None and TableFormat(fmt) is TableFormat.table:
            out.print("run one: prunezoo bench unstructured-mlp-digits  (or a suite YAML file)")
        return
    try:
        overrides = {"seeds": seeds} if seeds is not None else {}
        s = load_suite(suite, overrides | ({"device": device} if device is not None else {}))
        if quick:
            s = quick_suite(s)
        build_study(s)  # validate (and check fairness) before anything is written
        result = run_bench(s, out_dir, log=lambda m: console.log(m), workers=workers, force=force, progress=None)
    except ConfigError as err:
        fail(err)
    title = f"bench {s.name}: {s.model.name} on {s.dataset.name}"
    print_records(result.records, fmt, lambda: bench_rich_table(result.records, title=title))
    # csv/json keep stdout machine-readable: the file paths go to stderr
    (out if TableFormat(fmt) is TableFormat.table else console).print(f"CSV: {result.csv}\nHTML: {result.html}")


def bench_rich_table(records: list[dict], title: str = "", width: int | None = None) -> Table:
    """The bench results; numbers are never cut (low-priority columns are dropped first, and named)."""
    latency = any(r["latency_speedup"] is not None for r in records)
    cols = (
        ["method", "target", "sparsity", "acc % ± std", "95% CI", "Δ pp", "nnz", "FLOP ×"]
        + (["latency ×"] if latency else ["train FLOPs"])
        + ["n"]
    )
    cells: dict[str, list[str]] = {c: [] for c in cols}
    for r in records:
        acc = r["test_acc_mean"]
        ci = (
            ""
            if r["test_acc_ci95_low"] is None
            else f"[{100 * r['test_acc_ci95_low']:.1f}, {100 * r['test_acc_ci95_high']:.1f}]"
        )
        values = {
            "method": r["method"] + (" *" if r["baseline"] else ""),
            "target": "control" if r["kind"] == "dense" else f"{r['target_compression']:g}×",
            "sparsity": f"{100 * r['sparsity']:.1f}%",
            "acc % ± std": f"{100 * acc:.2f} ± {100 * (r['test_acc_std'] or 0):.2f}",
            "95% CI": ci,
            "Δ pp": "" if r["kind"] == "dense" else f"{100 * r['delta_vs_dense']:+.2f}",
            "nnz": f"{round(r['nnz']):,}",
            "FLOP ×": f"{r['flop_speedup']:.1f}",
            "latency ×": "" if r["latency_speedup"] is None else f"{r['latency_speedup']:.2f}",
            "train FLOPs": f"{r['train_flops_total']:.2g}",
            "n": str(r["n"]),
        }
        for col in cols:
            cells[col].append(values[col])
    caption = (
        "* baseline (always included); 95% CI: t-interval over seeds; train FLOPs include the "
        "shared dense training for methods that start from it"
    )
    return fitted_table(
        cells,
        title=title,
        text_cols=("method",),
        droppable=("train FLOPs", "nnz", "FLOP ×", "target"),
        width=width,
        caption=caption,
    )


def reproduce_command(
    finding: Annotated[str | None, typer.Argument(help="finding to reproduce (see --list)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the findings")] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="tiny smoke-test budget (verdicts mostly inconclusive)")
    ] = False,
    out_dir: RunsOutOption = Path("runs"),
    workers: WorkersOption = None,
    force: Annotated[bool, typer.Option(help="re-run even if complete")] = False,
    device: DeviceOption = None,
    fmt: RecordsFormatOption = "table",
    all_: Annotated[
        bool, typer.Option("--all", help="run every finding; writes reproduction.json and reproduction.html")
    ] = False,
    scale: Annotated[
        str | None, typer.Option(help="quick | default | paper (the papers' own setting: plan it with --dry-run)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="validate and plan (jobs, protocol, power) without running")
    ] = False,
    executor: ExecutorOption = Executor.local,
) -> None:
    """Re-test a headline finding of the source papers at CPU scale: prints the paper's claim, the
    measured numbers and a verdict computed from them (holds / does not hold / inconclusive)."""
    from prunezoo.bench.published import published_results
    from prunezoo.bench.reproduce import CRITERION, FINDINGS, decision, reproduce

    if scale is not None and quick and scale != "quick":
        fail(ConfigError("scale", f"--quick and --scale {scale} contradict each other"))
    scale = scale or ("quick" if quick else "default")
    if dry_run or all_:
        _reproduce_many(finding, all_, scale, dry_run, out_dir, workers, force, device, fmt, executor.value)
        return
    if list_ or finding is None:
        findings = [{"finding": f.name, "paper": f.paper, "claim": f.claim} for f in FINDINGS.values()]

        def table() -> Table:
            table = Table(title="findings (prunezoo reproduce <name>)")
            for col in ("finding", "paper", "claim"):
                table.add_column(col, overflow="fold")
            for rec in findings:
                table.add_row(rec["finding"], rec["paper"], rec["claim"])
            return table

        print_records(findings, fmt, table)
        return
    try:
        directory, verdicts = reproduce(
            finding,
            out_dir,
            scale=scale,
            executor=executor.value,
            workers=workers,
            progress=None,
            force=force,
            log=lambda m: console.log(m),
            device=device,
        )
    except ConfigError as err:
        fail(err)
    f = FINDINGS[finding]
    if TableFormat(fmt) is not TableFormat.table:  # the verdicts, for scripts; the directory on stderr
        records = [{"finding": f.name, **{k: v for k, v in vd.to_dict().items() if k != "numbers"}} for vd in verdicts]
        typer.echo(records_text(records, TableFormat(fmt)))
        console.print(f"overall: {decision(verdicts)}; results: {directory}")
        return
    out.print(f"[bold]{f.name}[/] — {f.paper}\n[bold]paper's claim:[/] {f.claim}")
    table = Table(title="measured (this run)")
    for col in ("claim", "measured", "verdict"):
        table.add_column(col, overflow="fold")
    colour = {"holds": "green", "does not hold": "red"}
    for v in verdicts:
        table.add_row(v.claim, v.measured, f"[{colour.get(v.status, 'yellow')}]{v.status}[/]")
    out.print(table)
    out.print(f"criterion: {CRITERION}")
    # the finding as a whole: holds if every claim holds, does not hold once every claim is decided and one
    # does not hold, inconclusive while a claim is undecided (the --all report's verdict)
    out.print(f"[bold]overall: {decision(verdicts)}[/]")
    pubs = published_results(finding)
    if pubs:
        out.print(published_rich_table(pubs))
    out.print(f"results: {directory}")


def _reproduce_many(finding, all_, scale, dry_run, out_dir, workers, force, device, fmt, executor) -> None:
    """--dry-run (one finding or --all): validate and plan; --all: run every finding and write the report."""
    import time

    from prunezoo.bench.reproduce import FINDINGS, min_detectable_effect, plan_finding, reproduce_all

    if finding is not None and all_:
        fail(ConfigError("finding", "give a finding or --all, not both"))
    names = list(FINDINGS) if all_ or finding is None else [finding]
    try:
        if dry_run:
            plans = [plan_finding(n, scale, device) for n in names]
            records = [
                {
                    "finding": p["finding"],
                    "scale": p["scale"],
                    "config": p["name"],
                    "hash": p.get("hash", ""),
                    "dataset": p["dataset"],
                    "jobs": p["jobs"] + p.get("companion", {}).get("jobs", 0),  # with a companion study's
                    "n": p["n"],
                    "mde": round(min_detectable_effect(p["n"], (p.get("protocol") or {}).get("expected_sd", 0.0)), 3),
                    "published": FINDINGS[p["finding"]].published,
                }
                for p in plans
            ]

            def table() -> Table:
                t = Table(title=f"reproduce plan (scale {scale}; nothing run)")
                for col in ("finding", "config", "dataset", "jobs", "n", "mde", "published"):
                    t.add_column(col, overflow="fold")
                for r in records:
                    t.add_row(*(str(r[c]) for c in ("finding", "config", "dataset", "jobs", "n", "mde", "published")))
                return t

            print_records(records, fmt, table)
            return
        t0 = time.perf_counter()
        payload, json_path, html_path = reproduce_all(
            out_dir,
            scale=scale,
            log=lambda m: console.log(m),
            force=force,
            workers=workers,
            progress=None,
            device=device,
            executor=executor,
        )
    except ConfigError as err:
        fail(err)
    records = [
        {
            "finding": r["finding"],
            "verdict": r["decision"],
            "claims": "; ".join(v["status"] for v in r["verdicts"]),
            "wall_s": round(r["wall_s"], 1),
        }
        for r in payload["findings"]
    ]

    def summary() -> Table:
        t = Table(title=f"reproduce --all (scale {scale})")
        for col in ("finding", "verdict", "claims", "wall_s"):
            t.add_column(col, overflow="fold")
        for r in records:
            t.add_row(*(str(r[c]) for c in ("finding", "verdict", "claims", "wall_s")))
        return t

    print_records(records, fmt, summary)
    msg = (
        f"total wall time {payload['total_wall_s']:.1f} s (this invocation {time.perf_counter() - t0:.1f} s)\n"
        f"JSON: {json_path}\nHTML: {html_path}"
    )
    (out if TableFormat(fmt) is TableFormat.table else console).print(msg)
