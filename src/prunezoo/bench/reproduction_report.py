"""The report of ``prunezoo reproduce --all``: ``reproduction.json`` and a self-contained
``reproduction.html`` (per finding: paper, claim, published number, what ran, the measured effects with
their intervals, the verdicts, a figure embedded as a base64 PNG, the wall time)."""

from __future__ import annotations

import base64
import io
import math
import platform
from html import escape
from pathlib import Path
from typing import Any

from prunezoo.utils.io import write_json, write_text

COLOURS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#9a6700"}


def effects_figure(record: dict[str, Any]) -> str:
    """A forest plot of the finding's claims: mean paired difference and its 95 % interval, the margin
    band shaded; a base64 PNG (empty when no claim has an interval)."""
    from matplotlib.figure import Figure

    items = []
    for v in record["verdicts"]:
        n = v.get("numbers") or {}
        if n.get("ci95") is None or n.get("mean_diff") is None and n.get("r") is None:
            continue
        scale = n.get("scale", 1.0)
        centre = n["mean_diff"] if n.get("mean_diff") is not None else n["r"]
        unit = n.get("unit") or ("r" if n.get("r") is not None else "")
        items.append((unit, centre * scale, n["ci95"][0] * scale, n["ci95"][1] * scale, v["status"]))
    if not items:
        return ""
    fig = Figure(figsize=(7.0, 0.55 * len(items) + 1.2))
    ax = fig.subplots()
    for i, (_unit, mid, lo, hi, status) in enumerate(items):
        ax.errorbar([mid], [i], xerr=[[mid - lo], [hi - mid]], fmt="o", color=COLOURS.get(status, "grey"), capsize=4)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels([f"claim {i + 1}" + (f" ({it[0]})" if it[0] else "") for i, it in enumerate(items)])
    ax.invert_yaxis()
    ax.set_xlabel("measured effect (mean paired difference, 95 % CI)")
    ax.set_title(record["finding"])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _decision(rec: dict[str, Any]) -> str:
    return rec.get("decision", rec["overall"])


def _fmt_wall(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _section(rec: dict[str, Any]) -> str:
    status = rec.get("decision", rec["overall"])
    proto = rec.get("protocol") or {}
    rows = "".join(
        f"<tr><td>{escape(v['claim'])}</td><td>{escape(v['measured'])}</td>"
        f"<td style='color:{COLOURS.get(v['status'], 'grey')}'><b>{escape(v['status'])}</b></td></tr>"
        for v in rec["verdicts"]
    )
    pubs = "".join(
        f"<li>{escape(p['paper'])}: {escape(p['model'])} / {escape(p['dataset'])}, {escape(p['metric'])} = "
        f"{p['value']:g}{escape(p.get('unit') or '')}</li>"
        for p in rec.get("published_rows", [])
    )
    png = effects_figure(rec)
    figure = f'<figure><img src="data:image/png;base64,{png}" alt="effects of {escape(rec["finding"])}"></figure>'
    power = (
        f"<p>Protocol: {escape(proto.get('data', ''))}; {escape(proto.get('model', ''))}; "
        f"{escape(proto.get('budget', ''))}; n = {proto.get('n')}; margin {escape(str(proto.get('margin', '')))}; "
        f"expected sd {proto.get('expected_sd')} {escape(proto.get('unit', ''))} "
        f"({escape(proto.get('sd_source', ''))}); minimum detectable effect {proto.get('mde', math.nan):.2f} "
        f"{escape(proto.get('unit', ''))}</p>"
        if proto
        else ""
    )
    return (
        f"<h2 id='{escape(rec['finding'])}'>{escape(rec['finding'])} — "
        f"<span style='color:{COLOURS.get(status, 'grey')}'>{escape(status)}</span></h2>"
        f"<p><b>Paper:</b> {escape(rec['paper'])}<br><b>Claim:</b> {escape(rec['claim'])}<br>"
        f"<b>Published:</b> {escape(rec.get('published') or '–')}</p>"
        + (f"<ul>{pubs}</ul>" if pubs else "")
        + power
        + f"<p><b>What ran:</b> scale {escape(rec.get('scale', ''))}, results in "
        f"<code>{escape(rec['directory'])}</code>; wall time {_fmt_wall(rec.get('wall_s'))}</p>"
        + f"<table><tr><th>claim</th><th>measured</th><th>verdict</th></tr>{rows}</table>"
        + (figure if png else "")
    )


def reproduction_payload(records: list[dict[str, Any]], *, scale: str, total_wall_s: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in records:
        key = r.get("decision", r["overall"])
        counts[key] = counts.get(key, 0) + 1
    return {
        "scale": scale,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()},
        "total_wall_s": total_wall_s,
        "counts": counts,
        "findings": records,
    }


def _cpus() -> int | None:
    import os

    return os.cpu_count()


def write_reproduction_report(out: str | Path, payload: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<out>/reproduction.json`` and ``<out>/reproduction.html``; returns their paths."""
    from prunezoo.analysis.report import REPORT_CSS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "reproduction.json", out / "reproduction.html"
    write_json(json_path, payload)
    summary = "".join(
        f"<tr><td><a href='#{escape(r['finding'])}'>{escape(r['finding'])}</a></td><td>{escape(r['paper'])}</td>"
        f"<td style='color:{COLOURS.get(_decision(r), 'grey')}'><b>{escape(_decision(r))}</b></td>"
        f"<td>{_fmt_wall(r.get('wall_s'))}</td></tr>"
        for r in payload["findings"]
    )
    body = (
        f"<h1>prunezoo reproduction report ({escape(payload['scale'])})</h1>"
        f"<p>{len(payload['findings'])} findings; total wall time {_fmt_wall(payload['total_wall_s'])}; "
        f"{payload['machine']['cpus']} CPUs. Verdicts: "
        + ", ".join(f"{v} {escape(k)}" for k, v in sorted(payload["counts"].items()))
        + "</p><table><tr><th>finding</th><th>paper</th><th>verdict</th><th>wall time</th></tr>"
        + summary
        + "</table>"
        + "".join(_section(r) for r in payload["findings"])
    )
    write_text(
        html_path,
        "<!doctype html><html><head><meta charset='utf-8'><title>prunezoo reproduction report</title>"
        f"<style>{REPORT_CSS}</style></head><body>{body}</body></html>\n",
    )
    return json_path, html_path
