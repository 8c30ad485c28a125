"""``rubrickit convert``: import and export the rubric formats of the field.

Formats (:data:`FORMATS`): ``rubrickit`` (YAML/JSON rubric, JSONL rubric set), ``healthbench`` (rows with
``rubrics`` of ``{criterion, points, tags}``), ``rar`` (Rubrics-as-Rewards ``{title, description, weight}``
items), ``prometheus`` (score rubrics and BiGGen-Bench rows), ``openrubrics`` (``[Hard Rule]``/``[Principle]``
lists). The record-level mappings live in :mod:`rubrickit.rubric.formats` (one module per format) and are documented,
with what each direction loses, in ``docs/formats.md``.

The input format is detected from the extension and the first record (:func:`detect_format`); the output
format from the extension (``.yaml``/``.json``/``.jsonl`` → rubrickit, ``.txt``/``.md`` → OpenRubrics) unless
given. Writes are atomic and never replace an existing file unless ``overwrite=True`` (the CLI's ``--force``).
"""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rubrickit._util.io import atomic_write_text, iter_jsonl_lines, loads_json
from rubrickit.errors import ConversionError, OutputExistsError, RubricError
from rubrickit.rubric.files import load_rubrics, save_rubric, save_rubric_set
from rubrickit.rubric.formats import (
    format_openrubrics,
    from_healthbench,
    from_prometheus,
    from_rar,
    parse_openrubrics,
    prompt_messages,
    to_healthbench,
    to_prometheus,
    to_rar,
)
from rubrickit.rubric.formats._common import Export, dump_records, load_json, read_text, short, suffix_of
from rubrickit.rubric.formats.healthbench import export_healthbench, read_healthbench
from rubrickit.rubric.formats.openrubrics import export_openrubrics, mentions_tag, read_openrubrics
from rubrickit.rubric.formats.prometheus import export_prometheus, read_prometheus
from rubrickit.rubric.formats.rar import export_rar, is_item_list, read_rar
from rubrickit.rubric.model import Rubric

__all__ = [
    "FORMATS",
    "ConversionReport",
    "detect_format",
    "output_format",
    "read_rubrics",
    "write_rubrics",
    "convert",
    "from_healthbench",
    "to_healthbench",
    "prompt_messages",
    "from_rar",
    "to_rar",
    "from_prometheus",
    "to_prometheus",
    "parse_openrubrics",
    "format_openrubrics",
]

FORMATS = ("rubrickit", "healthbench", "rar", "prometheus", "openrubrics")
"""The formats ``rubrickit convert`` reads and writes (``--from`` / ``--to``)."""

_TEXT_SUFFIXES = (".txt", ".md", ".markdown")
_YAML_SUFFIXES = (".yaml", ".yml")
_FORMAT_LIST = ", ".join(FORMATS)


# --------------------------------------------------------------------------- report


@dataclass
class ConversionReport:
    """What a conversion read and wrote: counts, what was skipped (and why), what the output cannot hold."""

    source: str
    """The input file."""
    target: str
    """The output file."""
    from_format: str
    """The input format (given or detected)."""
    to_format: str
    """The output format (given or from the output name)."""
    rubrics_read: int = 0
    """Rubrics read from the input."""
    criteria_read: int = 0
    """Criteria read from the input."""
    rubrics: int = 0
    """Rubrics written."""
    criteria: int = 0
    """Criteria written."""
    by_kind: dict[str, int] = field(default_factory=dict)
    """Written criteria per kind (``hard`` / ``principle``)."""
    penalties: int = 0
    """Written criteria with a negative weight."""
    scales: int = 0
    """Written criteria with anchored levels."""
    by_category: dict[str, int] = field(default_factory=dict)
    """Written criteria per category (RaR's essential / important / optional / pitfall, …)."""
    skipped: list[str] = field(default_factory=list)
    """One reason per rubric or criterion that the output format cannot express and was left out."""
    lossy: dict[str, int] = field(default_factory=dict)
    """Information read but with no place in the output: what it is → how many rubrics, criteria or rows."""
    warnings: list[str] = field(default_factory=list)
    """Things worth a look that did not stop the conversion."""

    def summary(self) -> str:
        """A few plain lines for the terminal."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.by_kind.items()))
        extras = [kinds] if kinds else []
        extras += [f"{self.penalties} penalties"] if self.penalties else []
        extras += [f"{self.scales} with a scale"] if self.scales else []
        lines = [
            f"{self.from_format} → {self.to_format}: {_plural(self.rubrics, 'rubric')}, "
            f"{_plural(self.criteria, 'criterion', 'criteria')}"
            + (f" ({'; '.join(extras)})" if extras else "")
        ]
        for reason, (count, first) in _group_reasons(self.skipped).items():
            example = f" (first: {first})" if count > 1 else f" ({first})"
            lines.append(f"skipped {count}: {reason}{example}")
        if self.lossy:
            lines.append("not kept: " + "; ".join(f"{what} ×{n}" for what, n in sorted(self.lossy.items())))
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON output and logs)."""
        return asdict(self)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _group_reasons(reasons: list[str]) -> dict[str, tuple[int, str]]:
    """``"<where>: <why>"`` lines grouped by why: ``{why: (count, first where)}``, in first-seen order."""
    groups: dict[str, tuple[int, str]] = {}
    for reason in reasons:
        where, _, why = reason.partition(": ")
        count, first = groups.get(why, (0, where))
        groups[why] = (count + 1, first)
    return groups


# --------------------------------------------------------------------------- detection


def _check_format(fmt: str | None, flag: str) -> str | None:
    if fmt is None:
        return None
    name = fmt.strip().lower()
    if name in FORMATS:
        return name
    close = difflib.get_close_matches(name, FORMATS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConversionError(f"{flag} {fmt!r} is not a known format{hint} Known formats: {_FORMAT_LIST}")


def _sniff(data: Any) -> str | None:
    """The format one parsed record (or a whole JSON document) looks like, or ``None``."""
    if isinstance(data, list):
        if is_item_list(data):
            return "rar"
        return _sniff(data[0]) if data else None
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if "rubrickit" in keys or isinstance(data.get("criteria"), list):
        return "rubrickit"
    items = data.get("rubrics")
    if isinstance(items, list) and items and isinstance(items[0], dict) and "criterion" in items[0]:
        return "healthbench"
    if "score_rubric" in keys or "orig_criteria" in keys or {"criteria", "score1_description"} <= keys:
        return "prometheus"
    rubric = data.get("rubric", items)
    if is_item_list(rubric):
        return "rar"
    if isinstance(rubric, str):
        if mentions_tag(rubric):
            return "openrubrics"
        if rubric.lstrip().startswith("["):
            return "rar"
    return None


def _first_record(path: Path) -> Any:
    if suffix_of(path) == ".jsonl":
        for number, line in iter_jsonl_lines(path):
            try:
                return loads_json(line)
            except ValueError as exc:
                raise ConversionError(
                    f"{path}:{number}: not JSON ({exc}); pass --from to say the format"
                ) from None
        raise ConversionError(f"{path}: the file is empty")
    return load_json(path)


def detect_format(path: str | Path) -> str:
    """The format of a rubric file, from its extension and its first record.

    ``.yaml``/``.yml`` → ``rubrickit``; ``.txt``/``.md`` → ``openrubrics``; JSON and JSONL (optionally
    ``.gz``) by their keys. Raises :class:`~rubrickit.errors.ConversionError` saying to pass ``--from`` when
    unsure.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: {'is a directory (folder), not a file' if path.is_dir() else 'no such file'}")
    suffix = suffix_of(path)
    if suffix in _YAML_SUFFIXES:
        return "rubrickit"
    if suffix in _TEXT_SUFFIXES:
        return "openrubrics"
    if suffix in (".json", ".jsonl"):
        data = _first_record(path)
    else:
        text = read_text(path)
        try:
            data = loads_json(text)
        except ValueError:
            if mentions_tag(text):
                return "openrubrics"
            raise ConversionError(
                f"{path}: cannot tell the format from the name or the content; pass --from "
                f"with one of: {_FORMAT_LIST}"
            ) from None
    fmt = _sniff(data)
    if fmt is None:
        seen = f"keys {sorted(data)[:8]}" if isinstance(data, dict) else short(data)
        raise ConversionError(
            f"{path}: cannot tell the format of the first record ({seen}); pass --from with one "
            f"of: {_FORMAT_LIST}"
        )
    return fmt


def output_format(path: str | Path) -> str:
    """The format an output name implies.

    ``.yaml``/``.yml``/``.json``/``.jsonl`` → rubrickit, ``.txt``/``.md`` → OpenRubrics; anything else needs
    ``--to``.
    """
    suffix = suffix_of(path)
    if suffix in (*_YAML_SUFFIXES, ".json", ".jsonl"):
        return "rubrickit"
    if suffix in _TEXT_SUFFIXES:
        return "openrubrics"
    raise ConversionError(
        f"{path}: cannot tell the output format from the name; pass --to with one of: {_FORMAT_LIST}"
    )


# --------------------------------------------------------------------------- reading


_READERS: dict[str, Callable[[Path, Counter[str]], list[Rubric]]] = {
    "healthbench": read_healthbench,
    "rar": read_rar,
    "prometheus": read_prometheus,
    "openrubrics": read_openrubrics,
}


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _read(path: Path, fmt: str, lossy: Counter[str]) -> list[Rubric]:
    if not path.is_file():
        raise ConversionError(f"{path}: {'is a directory (folder), not a file' if path.is_dir() else 'no such file'}")
    if fmt == "rubrickit":
        return load_rubrics(path)
    rubrics = _READERS[fmt](path, lossy)
    source = f"{path.name}#sha256={_file_digest(path)}"
    return [
        r.model_copy(update={"provenance": r.provenance.model_copy(update={"source": source})})
        if r.provenance is not None
        else r
        for r in rubrics
    ]


def read_rubrics(path: str | Path, fmt: str | None = None) -> list[Rubric]:
    """Read rubrics from a file in any of :data:`FORMATS` (detected when ``fmt`` is ``None``).

    Imported rubrics record ``provenance.converted_from`` and ``provenance.source`` (file name and sha256).
    Errors name the file, the line (JSONL) and the field, and say what to change.
    """
    path = Path(path)
    fmt = _check_format(fmt, "--from") or detect_format(path)
    return _read(path, fmt, Counter())


# --------------------------------------------------------------------------- writing


def _rubrickit_export(rubrics: list[Rubric]) -> Export:
    out = Export()
    out.written = list(rubrics)
    return out


def _export(rubrics: list[Rubric], path: Path, fmt: str) -> Export:
    suffix = suffix_of(path)
    if fmt == "rubrickit":
        if suffix in (*_YAML_SUFFIXES, ".json") and len(rubrics) != 1:
            raise ConversionError(
                f"{path}: {len(rubrics)} rubrics cannot go in one {suffix} file; write a .jsonl "
                "rubric set (one rubric per line)"
            )
        if suffix not in (*_YAML_SUFFIXES, ".json", ".jsonl"):
            raise ConversionError(f"{path}: rubrickit files are .yaml (one rubric) or .jsonl (a rubric set)")
        return _rubrickit_export(rubrics)
    if fmt == "openrubrics" and suffix in _TEXT_SUFFIXES:
        if len(rubrics) != 1:
            raise ConversionError(
                f"{path}: {len(rubrics)} rubrics cannot go in one text list; write .jsonl (one "
                "row per rubric)"
            )
        return export_openrubrics(rubrics, as_text=True)
    if suffix not in (".json", ".jsonl"):
        raise ConversionError(f"{path}: write {fmt} as .jsonl (one row per line) or .json (one array)")
    if fmt == "openrubrics":
        return export_openrubrics(rubrics, as_text=False)
    return {"healthbench": export_healthbench, "rar": export_rar, "prometheus": export_prometheus}[fmt](
        rubrics
    )


def _save(export: Export, path: Path, fmt: str, overwrite: bool) -> Path:
    suffix = suffix_of(path)
    if fmt == "rubrickit" and suffix == ".jsonl":
        try:
            return save_rubric_set(export.written, path, overwrite=overwrite)
        except RubricError as exc:
            raise ConversionError(
                f"{path}: {exc}; a rubric set needs a distinct prompt_id on every rubric (write "
                "a single general rubric to .yaml instead)"
            ) from None
    if fmt == "rubrickit":
        return save_rubric(export.written[0], path, overwrite=overwrite)
    if fmt == "openrubrics" and suffix in _TEXT_SUFFIXES:
        return atomic_write_text(path, export.records[0], overwrite=overwrite)
    return atomic_write_text(path, dump_records(export.records, path), overwrite=overwrite)


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise ConversionError(f"{path}: is a folder; give an output file name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass --force (overwrite=True) to replace it.")


def _write(rubrics: list[Rubric], path: Path, fmt: str, overwrite: bool, skip: bool) -> Export:
    if not rubrics:
        raise ConversionError(f"{path}: no rubrics to write")
    _refuse_existing(path, overwrite)
    export = _export(rubrics, path, fmt)
    if export.skipped and not skip:
        raise ConversionError(
            f"{path}: {fmt} cannot express everything: {export.skipped[0]}"
            + (f" (and {len(export.skipped) - 1} more)" if len(export.skipped) > 1 else "")
            + "; pass skip_unrepresentable=True to leave those out"
        )
    if not export.written:
        raise ConversionError(
            f"{path}: nothing to write: {fmt} cannot express any of the {len(rubrics)} rubrics "
            f"({export.skipped[0]})"
        )
    _save(export, path, fmt, overwrite)
    return export


def write_rubrics(
    rubrics: Iterable[Rubric],
    path: str | Path,
    fmt: str | None = None,
    *,
    overwrite: bool = False,
    skip_unrepresentable: bool = False,
) -> Path:
    """Write rubrics in any of :data:`FORMATS` (from the extension when ``fmt`` is ``None``); return the path.

    rubrickit: ``.yaml`` (or ``.json``) for one rubric, ``.jsonl``/``.jsonl.gz`` for a rubric set. Field
    formats: ``.jsonl`` rows or a ``.json`` array; OpenRubrics also ``.txt``/``.md`` for one list. The write
    is atomic and refuses to replace an existing file unless ``overwrite=True``. What the format cannot
    express (a penalty in an OpenRubrics list, a multi-criterion rubric as a Prometheus score rubric) raises
    :class:`~rubrickit.errors.ConversionError`, or is left out with ``skip_unrepresentable=True``.
    """
    path = Path(path)
    fmt = _check_format(fmt, "--to") or output_format(path)
    _write(list(rubrics), path, fmt, overwrite, skip_unrepresentable)
    return path


# --------------------------------------------------------------------------- convert


def _count(report: ConversionReport, rubrics: list[Rubric]) -> None:
    criteria = [c for r in rubrics for c in r.criteria]
    report.rubrics, report.criteria = len(rubrics), len(criteria)
    report.by_kind = dict(sorted(Counter(c.kind for c in criteria).items()))
    report.penalties = sum(1 for c in criteria if c.weight < 0)
    report.scales = sum(1 for c in criteria if c.scale is not None)
    report.by_category = dict(sorted(Counter(c.category for c in criteria if c.category).items()))
    positive_pitfalls = sum(1 for c in criteria if c.category == "pitfall" and c.weight > 0)
    if positive_pitfalls:
        report.warnings.append(
            f"{positive_pitfalls} pitfall criteria have a positive weight; kept as given, so "
            "holding them is rewarded (check their wording)"
        )
    zero = sum(1 for c in criteria if c.weight == 0 and c.scale is None)
    if zero:
        report.warnings.append(f"{zero} criteria have weight 0 and never change a score")


def convert(
    in_path: str | Path,
    out_path: str | Path,
    *,
    from_fmt: str | None = None,
    to_fmt: str | None = None,
    overwrite: bool = False,
) -> ConversionReport:
    """Convert a rubric file between :data:`FORMATS`; what the target cannot express is skipped and reported.

    Formats are detected when not given (input: extension and content; output: extension). Refuses to
    replace an existing ``out_path`` unless ``overwrite=True`` (:class:`~rubrickit.errors.OutputExistsError`),
    and fails rather than write an empty file when the target can express none of the rubrics.
    """
    in_path, out_path = Path(in_path), Path(out_path)
    from_fmt, to_fmt = _check_format(from_fmt, "--from"), _check_format(to_fmt, "--to")
    _refuse_existing(out_path, overwrite)
    source_fmt = from_fmt or detect_format(in_path)
    target_fmt = to_fmt or output_format(out_path)
    lossy: Counter[str] = Counter()
    rubrics = _read(in_path, source_fmt, lossy)
    export = _write(rubrics, out_path, target_fmt, overwrite, skip=True)
    lossy.update(export.lossy)
    report = ConversionReport(
        source=str(in_path),
        target=str(out_path),
        from_format=source_fmt,
        to_format=target_fmt,
        rubrics_read=len(rubrics),
        criteria_read=sum(len(r.criteria) for r in rubrics),
        skipped=list(export.skipped),
        lossy=dict(sorted((k, v) for k, v in lossy.items() if v > 0)),
    )
    _count(report, export.written)
    return report
