"""The report of the engine benchmark: the machine's facts and ``RESULTS-engine.md``'s Markdown, plus the console table.

:func:`machine_facts` (cores, CPU, platform, library versions, git commit) is shared by the other bench scripts
through ``bench_engine``; :func:`render_markdown` writes the file format that ``bench/RESULTS-engine.md`` has.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from engine_common import ROOT, fmt

__all__ = ["machine_facts", "print_table", "render_markdown"]


def machine_facts() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "?"
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        commit = head + (" + uncommitted changes" if dirty else "")
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "openai": version("openai"),
        "aiohttp": version("aiohttp"),
        "litellm": version("litellm"),
        "autorubric": version("autorubric"),
        "rubrickit": f"{version('rubrickit')} (commit {commit})",
    }


def render_markdown(results: list[dict[str, Any]], command: str, started: _dt.datetime, facts: dict[str, str],
                    loads: tuple[str, str], seconds: float) -> str:
    lines = ["# Judge engine benchmarks", "",
             "Written by `bench/bench_engine.py` (see `bench/README.md`). Every number below comes from the run "
             "described here; the sections ran one after another in that one run.", "",
             f"- **Command:** `{command}`",
             f"- **Date:** {started.strftime('%Y-%m-%d %H:%M:%S %Z').strip()} (took {seconds:.0f} s)",
             f"- **Machine:** {facts['nproc']} CPU cores ({facts['cpu']}), {facts['platform']}; load average "
             f"{loads[0]} at the start and {loads[1]} at the end (other processes share the cores)",
             f"- **Python** {facts['python']}, **torch** {facts['torch']}, transformers {facts['transformers']}, "
             f"openai {facts['openai']}, aiohttp {facts['aiohttp']}, litellm {facts['litellm']}, autorubric "
             f"{facts['autorubric']}, rubrickit {facts['rubrickit']}",
             "- **Server:** `tests/oai_server.py` in its own process (`bench/_server.py`) on 127.0.0.1", "",
             "## Summary", "", "| section | ratio | value | target |", "|---|---|---|---|"]
    for result in results:
        ratio = result.get("ratio")
        if ratio:
            value = f"**{ratio['value']:.2f}**" + (f" (best run {ratio['best']:.2f})" if ratio.get("best") else "")
            lines.append(f"| {result['key']}. {result['title']} | {ratio['label']} | {value} | {ratio['target']} |")
        else:
            lines.append(f"| {result['key']}. {result['title']} | — | failed | |")
    for result in results:
        lines += ["", f"## {result['key']}. {result['title']}", ""]
        if result["rows"]:
            lines += ["| measure | value | unit | detail |", "|---|---|---|---|"]
            for row in result["rows"]:
                lines.append(f"| {row['label']} | {fmt(row['value'])} | {row['unit']} | {row['detail']} |")
        for table in result.get("tables", []):
            lines += ["", table]
        if result.get("interpretation"):
            lines += ["", "**Interpretation.** " + " ".join(result["interpretation"])]
        if result.get("errors"):
            lines += ["", "**Failures in this section:**", ""] + [f"- {e}" for e in result["errors"]]
        lines.append(f"\n_Section time: {result.get('seconds', 0):.0f} s._")
    return "\n".join(lines) + "\n"


def print_table(results: list[dict[str, Any]]) -> None:
    print()
    for result in results:
        print(f"{result['key']}. {result['title']}")
        for row in result["rows"]:
            label = row["label"].replace("**", "").replace("`", "")
            print(f"    {label:<72} {fmt(row['value']):>14} {row['unit']}")
        ratio = result.get("ratio")
        if ratio:
            print(f"    => {ratio['label']}: {ratio['value']:.2f}  (target {ratio['target']})")
        for error in result.get("errors", []):
            print(f"    !! {error}")
    print()
