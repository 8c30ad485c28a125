"""The evaluation report: one self-contained HTML file (no scripts, fonts, images or styles from the network; plots
are inline SVG) built from a records file: headline metrics with 95% intervals per configuration, the per-subset
table, the confusion matrix, the reliability diagram of P(A), the probe results, and the worst disagreements with
the judge's rationale. Every piece of data-derived text (prompts, responses, rationales, subset and rubric names) is
HTML-escaped, so a response cannot inject markup or scripts into the report.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rubrickit._util.io import atomic_write_text

__all__ = ["render_report", "write_report"]

_WORST = 12
_SNIPPET = 600

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;
background:#fff;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:2px solid #e4e7ee}
h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #d5d9e2;padding:.3rem .6rem;
text-align:right}th{background:#f1f3f8}td.l,th.l{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}.card{background:#f5f7fb;border:1px solid #dfe3ec;border-radius:8px;
padding:.7rem 1rem;min-width:9rem}.card .v{font-size:1.6rem;font-weight:600;color:#2147a8}.card .k{font-size:.8rem;
color:#5b6478}.muted{color:#6b7385;font-size:.85rem}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f9;border:1px solid #e2e4ea;padding:.5rem;
font-size:.8rem;max-height:14rem;overflow:auto}
details{margin:.5rem 0;border:1px solid #e2e4ea;border-radius:6px;padding:.4rem .7rem}summary{cursor:pointer}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _ci(interval: Any) -> str:
    if not interval:
        return ""
    return f" [{_pct(interval[0])}, {_pct(interval[1])}]"


def _cards(metrics: Mapping[str, Any]) -> str:
    cards = [("accuracy", _pct(metrics["accuracy"]), _ci(metrics.get("accuracy_ci95"))),
             ("strict accuracy", _pct(metrics["accuracy_strict"]), _ci(metrics.get("accuracy_strict_ci95"))),
             ("consistency (both orders)", _pct(metrics["consistency"]), _ci(metrics.get("consistency_ci95"))),
             ("Cohen's κ", _num(metrics.get("kappa")), ""),
             ("pairs", str(metrics["n"]), f" coverage {_pct(metrics['coverage'])}"),
             ("ties / errors", f"{metrics['ties']} / {metrics['errors']}", f" abstained {metrics['abstentions']}")]
    calibration = metrics.get("calibration")
    if calibration:
        cards.append(("ECE of P(A)", _num(calibration["ece"]), f" n={calibration['n']}"))
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}{_e(extra)}</div></div>'
        for k, v, extra in cards) + "</div>"


def _subset_table(per_subset: Mapping[str, Any], title: str) -> str:
    head = ("<tr><th class='l'>" + _e(title) + "</th><th>n</th><th>accuracy [95% CI]</th><th>strict</th>"
            "<th>consistency</th><th>κ</th><th>ties</th><th>errors</th><th>bar</th></tr>")
    rows = []
    for name, m in per_subset.items():
        width = 0 if m["accuracy"] is None else round(120 * m["accuracy"])
        bar = (f'<svg width="124" height="12" role="img" aria-label="accuracy"><rect x="0" y="1" width="120" '
               f'height="10" fill="#e6e9f0"/><rect x="0" y="1" width="{width}" height="10" fill="#3d6bd8"/>'
               f'<line x1="60" y1="0" x2="60" y2="12" stroke="#a33" stroke-width="1"/></svg>')
        rows.append(f"<tr><td class='l'>{_e(name)}</td><td>{m['n']}</td><td>{_pct(m['accuracy'])}"
                    f"{_e(_ci(m.get('accuracy_ci95')))}</td><td>{_pct(m['accuracy_strict'])}</td>"
                    f"<td>{_pct(m['consistency'])}</td><td>{_num(m['kappa'])}</td><td>{m['ties']}</td>"
                    f"<td>{m['errors']}</td><td>{bar}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _confusion(metrics: Mapping[str, Any]) -> str:
    table = metrics["confusion"]
    labels = ("A", "B", "tie")
    rows = "".join(f"<tr><th class='l'>gold {g}</th>" + "".join(f"<td>{table[g][p]}</td>" for p in labels) + "</tr>"
                   for g in labels)
    return ("<table><tr><th class='l'></th>" + "".join(f"<th>judge {p}</th>" for p in labels) + "</tr>"
            + rows + "</table>")


def reliability_svg(calibration: Mapping[str, Any], size: int = 260) -> str:
    """An inline SVG reliability diagram: mean P(A) per bin (x) against the share of gold A (y)."""
    pad = 34
    inner = size - 2 * pad
    parts = [f'<svg width="{size}" height="{size}" role="img" '
             f'aria-label="reliability diagram"><rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" '
             f'fill="#f7f8fb" stroke="#c9cedb"/>',
             f'<line x1="{pad}" y1="{pad + inner}" x2="{pad + inner}" y2="{pad}" stroke="#999" '
             'stroke-dasharray="4 3"/>']
    for row in calibration["bins"]:
        if not row["n"]:
            continue
        x = pad + row["low"] * inner
        width = (row["high"] - row["low"]) * inner
        height = row["frequency"] * inner
        parts.append(f'<rect x="{x:.1f}" y="{pad + inner - height:.1f}" width="{width - 1:.1f}" '
                     f'height="{height:.1f}" fill="#3d6bd8" fill-opacity="0.55"/>')
        cx, cy = pad + row["confidence"] * inner, pad + inner - row["frequency"] * inner
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="#1c3f94"><title>n={row["n"]}</title>'
                     "</circle>")
    parts.append(f'<text x="{size / 2}" y="{size - 6}" font-size="11" text-anchor="middle">predicted P(A)</text>')
    parts.append(f'<text x="12" y="{size / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {size / 2})">share gold A</text>')
    for tick in (0, 0.5, 1):
        parts.append(f'<text x="{pad + tick * inner}" y="{pad + inner + 13}" font-size="10" '
                     f'text-anchor="middle">{tick}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _probes(probes: Mapping[str, Any]) -> str:
    if not probes:
        return "<p class='muted'>No probes were run (use --probes position,length,master-key,order).</p>"
    rows = []
    for name, p in probes.items():
        extra = []
        if p.get("first_rate") is not None:
            extra.append(f"first-shown chosen {_pct(p['first_rate'])} (n={p['first_n']})")
        if p.get("pass_rate") is not None:
            extra.append(f"criteria passed by master keys {_pct(p['pass_rate'])} (n={p['pass_n']})")
        if p.get("errors"):
            extra.append(f"{p['errors']} failed")
        rows.append(f"<tr><td class='l'>{_e(name)}</td><td>{_pct(p.get('rate'))}</td><td>{p.get('n', 0)}</td>"
                    f"<td class='l'>{_e(p.get('description', ''))}</td><td class='l'>{_e('; '.join(extra))}</td></tr>")
    return ("<table><tr><th class='l'>probe</th><th>rate</th><th>n</th><th class='l'>what the rate is</th>"
            "<th class='l'>more</th></tr>" + "".join(rows) + "</table>")


def _snippet(text: Any) -> str:
    text = str(text or "")
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + " …"


def _worst(rows: Sequence[Mapping[str, Any]]) -> str:
    wrong = [r for r in rows if r.get("winner") is not None and r.get("label") in ("A", "B")
             and r["winner"] != r["label"]]
    wrong.sort(key=lambda r: -abs(float(r.get("margin") or 0.0)))
    if not wrong:
        return "<p class='muted'>No disagreements with the gold labels.</p>"
    parts = []
    for r in wrong[:_WORST]:
        title = (f"{r['pair_id']} — gold {r['label']}, judge {r['winner']} (margin {_num(r.get('margin'))}, "
                 f"subset {r.get('subset') or '-'})")
        parts.append(
            f"<details><summary>{_e(title)}</summary>"
            f"<h3>Prompt</h3><pre>{_e(_snippet(r.get('prompt')))}</pre>"
            f"<h3>Response A</h3><pre>{_e(_snippet(r.get('response_a')))}</pre>"
            f"<h3>Response B</h3><pre>{_e(_snippet(r.get('response_b')))}</pre>"
            f"<h3>Judge's rationale</h3><pre>{_e(r.get('rationale') or '(one-token judgment: no rationale)')}</pre>"
            "</details>")
    return "".join(parts)


def _config_section(name: str, metrics: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    details = metrics.get("details", {})
    accounting = details.get("accounting") or {}
    facts = (f"judge {details.get('judge', '?')} · mode {details.get('mode', '?')} · rubric mode "
             f"{details.get('rubric_mode', '?')} · both orders {details.get('swap', '?')} · calls "
             f"{accounting.get('calls', '?')} · tokens in {accounting.get('input_tokens', '?')} · out "
             f"{accounting.get('output_tokens', '?')} · cost {accounting.get('cost')} · "
             f"{details.get('elapsed_s', '?')} s")
    parts = [f"<h2>{_e(name)}</h2><p class='muted'>{_e(facts)}</p>", _cards(metrics),
             "<h3>Per subset</h3>", _subset_table(metrics.get("per_subset", {}), "subset")]
    if metrics.get("per_dataset"):
        parts += ["<h3>Per dataset</h3>", _subset_table(metrics["per_dataset"], "dataset")]
    parts += ["<h3>Confusion (gold × judge)</h3>", _confusion(metrics)]
    if metrics.get("calibration"):
        cal = metrics["calibration"]
        parts += [f"<h3>Reliability of P(A)</h3><p class='muted'>ECE {_num(cal['ece'])} over n={cal['n']} "
                  "pairs; the dashed line is perfect calibration.</p>", reliability_svg(cal)]
    if metrics.get("graded"):
        g = metrics["graded"]
        parts.append(f"<p>Graded labels: Spearman {_num(g['spearman'])}, Kendall {_num(g['kendall'])} "
                     f"(n={g['n']}).</p>")
    parts += ["<h3>Probes</h3>", _probes(metrics.get("probes", {})),
              "<h3>Worst disagreements</h3>", _worst(rows)]
    return "".join(parts)


def _comparison(summary: Mapping[str, Mapping[str, Any]]) -> str:
    rows = "".join(f"<tr><td class='l'>{_e(name)}</td><td>{m['n']}</td><td>{_pct(m['accuracy'])}"
                   f"{_e(_ci(m.get('accuracy_ci95')))}</td><td>{_pct(m['accuracy_strict'])}</td>"
                   f"<td>{_pct(m['consistency'])}</td><td>{_pct(m['coverage'])}</td></tr>"
                   for name, m in summary.items())
    return ("<h2>Configurations side by side</h2><table><tr><th class='l'>rubric</th><th>n</th>"
            "<th>accuracy [95% CI]</th><th>strict</th><th>consistency</th><th>coverage</th></tr>" + rows + "</table>")


def render_report(records: Sequence[Mapping[str, Any]], *, summary: Mapping[str, Any] | None = None,
                  title: str = "rubrickit evaluation report") -> str:
    """The HTML report of a records file's lines (``summary``: their :func:`~rubrickit.eval.summarize`)."""
    from .metrics import TIE_POLICY
    from .runner import summarize

    summary = summary if summary is not None else summarize(records)
    body = [f"<h1>{_e(title)}</h1>", f"<p class='muted'>Tie policy: {_e(TIE_POLICY)}. Intervals: 95% percentile "
            "bootstrap (seeded).</p>"]
    if len(summary) > 1:
        body.append(_comparison(summary))
    for name, metrics in summary.items():
        rows = [r for r in records if r.get("type") == "pair" and str(r.get("config")) == name]
        body.append(_config_section(name, metrics, rows))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(records: Sequence[Mapping[str, Any]], path: str | Path, *,
                 summary: Mapping[str, Any] | None = None, overwrite: bool = True) -> Path:
    """Write :func:`render_report` to ``path`` atomically (an existing file only with ``overwrite``)."""
    return atomic_write_text(path, render_report(records, summary=summary), overwrite=overwrite)
