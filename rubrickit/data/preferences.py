"""Preference data for the generation methods, grouped by prompt.

Every method reads the same shapes (any file :func:`rubrickit.data.items.load_pairs` reads: JSONL/JSONL.gz, JSON,
CSV, a Hugging Face dataset saved with ``save_to_disk``; ``mapping={field: column}`` renames columns):

- the unified pairwise format of ``../shared/data/pairs`` (``prompt``, ``response_a``, ``response_b``, ``label``
  ``A``/``B``/``tie``);
- ``chosen``/``rejected`` columns (strings or whole chats);
- ranked lists: ``responses`` (a list of strings) with ``ranking`` (best first: a list of indices into
  ``responses``), or ``responses`` alone, already best first when ``ranked: true``; a ranked list of k responses
  induces the k·(k−1)/2 pairs (better, worse);
- unranked pools: ``responses`` without ranking (for methods that only need responses: decompose, tail);
- prompts with a ``reference`` answer and no responses (for ``reference``).

Rows with the same ``prompt_id`` (or, without one, the same prompt text) form one :class:`PromptGroup`: its
distinct responses and the labelled pairs between them. Ties keep their responses but induce no pair.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from rubrickit._util.io import no_rows
from rubrickit.data.items import PairItem, Prompt, _apply_mapping, _rows, misspelling_problems, stable_id
from rubrickit.errors import RubricError, format_location

__all__ = ["Comparison", "PromptGroup", "file_digest", "groups_from_pairs", "load_groups", "prompt_text"]


@dataclass(frozen=True)
class Comparison:
    """One labelled preference inside a group: ``better`` beats ``worse`` (indices into the group's responses)."""

    better: int
    worse: int
    pair_id: str


@dataclass
class PromptGroup:
    """One prompt with its responses, labelled pairs and reference answer."""

    id: str
    """The prompt's id (``prompt_id`` of the rows, else a stable hash of the prompt): generated rubrics use it."""
    prompt: Prompt
    """The prompt as given (a string or a chat)."""
    responses: list[str] = field(default_factory=list)
    """Distinct responses, in first-seen order (best first for ranked lists)."""
    comparisons: list[Comparison] = field(default_factory=list)
    """Labelled pairs (better, worse)."""
    reference: str | None = None
    """A reference answer, when the data has one."""
    subset: str | None = None
    """The rows' subset, when given."""
    row_ids: list[str] = field(default_factory=list)
    """Ids of the rows that formed the group."""

    def add_response(self, text: str) -> int:
        """Index of ``text`` in :attr:`responses`, appending it when new."""
        try:
            return self.responses.index(text)
        except ValueError:
            self.responses.append(text)
            return len(self.responses) - 1

    @property
    def text(self) -> str:
        """The prompt as plain text (a chat is rendered ``role: content`` per line)."""
        return prompt_text(self.prompt)

    def pairs(self) -> list[tuple[str, str, str]]:
        """``(pair_id, better response, worse response)`` for every labelled pair."""
        return [(c.pair_id, self.responses[c.better], self.responses[c.worse]) for c in self.comparisons]


def prompt_text(prompt: Prompt) -> str:
    """A prompt as plain text: a string as is, a chat as ``role: content`` lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{getattr(m, 'role', None) or m['role']}: {getattr(m, 'content', None) or m['content']}"
                       for m in prompt)


def file_digest(path: str | Path) -> str:
    """``sha256:<16 hex>`` of a file's bytes (a folder: of its files' names and bytes), for provenance."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


def _prompt_key(prompt: Any) -> str:
    return json.dumps(prompt if isinstance(prompt, str) else [dict(m) if isinstance(m, Mapping) else m.model_dump()
                                                             for m in prompt], sort_keys=True, ensure_ascii=False)


class _Grouper:
    def __init__(self) -> None:
        self.groups: dict[str, PromptGroup] = {}

    def group(self, prompt: Prompt, prompt_id: str | None, subset: str | None) -> PromptGroup:
        key = prompt_id or _prompt_key(prompt)
        if key not in self.groups:
            self.groups[key] = PromptGroup(id=prompt_id or stable_id(prompt), prompt=prompt, subset=subset)
        return self.groups[key]

    def add_pair(self, pair: PairItem) -> None:
        group = self.group(pair.prompt, pair.prompt_id, pair.subset)
        a, b = group.add_response(pair.response_a), group.add_response(pair.response_b)
        group.row_ids.append(pair.id)
        if pair.reference and not group.reference:
            group.reference = pair.reference
        if pair.label in ("A", "B") and a != b:
            better, worse = (a, b) if pair.label == "A" else (b, a)
            group.comparisons.append(Comparison(better, worse, pair.id))


def groups_from_pairs(pairs: Sequence[PairItem | Mapping[str, Any]]) -> list[PromptGroup]:
    """Group pairs given in code by prompt."""
    grouper = _Grouper()
    for pair in pairs:
        grouper.add_pair(pair if isinstance(pair, PairItem) else PairItem.model_validate(pair))
    return list(grouper.groups.values())


_PROMPT = TypeAdapter(Prompt)


def _prompt(row: Mapping[str, Any], where: tuple[Path, int | None], problems: list[str]) -> Prompt | None:
    """The row's prompt (a string or a chat), or ``None`` after adding the problem."""
    prompt = row.get("prompt")
    if not prompt:
        problems.append(format_location(*where, "prompt", "missing required field; add it (or --map prompt=COLUMN)"))
        return None
    try:
        return _PROMPT.validate_python(prompt)
    except ValidationError:
        problems.append(format_location(*where, "prompt", "expected a string or a chat (a list of {role, content} "
                                        f"messages), got {type(prompt).__name__}"))
        return None


def _ranked(path: Path, line: int | None, row: Mapping[str, Any], grouper: _Grouper, problems: list[str]) -> None:
    responses = row.get("responses")
    where = (path, line)
    if not isinstance(responses, list) or not all(isinstance(r, str) and r.strip() for r in responses):
        problems.append(format_location(*where, "responses", "must be a list of non-empty strings"))
        return
    ranking = row.get("ranking")
    if ranking is not None:
        if (not isinstance(ranking, list) or not all(isinstance(i, int) for i in ranking)
                or sorted(ranking) != list(range(len(responses)))):
            problems.append(format_location(*where, "ranking", f"must list every index 0..{len(responses) - 1} of "
                                            "responses once, best first"))
            return
        ordered = [responses[i] for i in ranking]
    else:
        ordered = list(responses)
    is_ranked = ranking is not None or bool(row.get("ranked"))
    prompt = _prompt(row, where, problems)
    if prompt is None:
        return
    prompt_id = row.get("prompt_id") or row.get("id")
    group = grouper.group(prompt, str(prompt_id) if prompt_id is not None else None, row.get("subset"))
    row_id = str(row.get("id") or stable_id(prompt, ordered))
    group.row_ids.append(row_id)
    if isinstance(row.get("reference"), str) and not group.reference:
        group.reference = row["reference"]
    indices = [group.add_response(text) for text in ordered]
    if is_ranked:
        for i, better in enumerate(indices):
            for j, worse in enumerate(indices[i + 1:], start=i + 1):
                if better != worse:
                    group.comparisons.append(Comparison(better, worse, f"{row_id}#{i}>{j}"))


_COLUMNS = (*PairItem.model_fields, "chosen", "rejected", "responses", "ranking", "ranked", "response")
"""Every column the shapes above read, and ``response`` (a scoring column, ignored here): a close misspelling of one
the row lacks is an error."""


def load_groups(path: str | Path, *, mapping: Mapping[str, str] | None = None,
                limit: int | None = None, allow_empty: bool = False) -> list[PromptGroup]:
    """Read preference data (any shape in the module docstring) into prompt groups, in first-seen order.

    ``limit`` keeps the first ``limit`` groups. Raises :class:`RubricError` naming file, line and field, and for a
    file with no rows unless ``allow_empty`` (then it logs a warning and returns ``[]``).
    """
    path = Path(path)
    if not path.exists():
        raise RubricError.at(path, None, None, "no such file; give a pairs/ranked-list file (JSONL, JSON, CSV) "
                             "or a saved Hugging Face dataset folder")
    grouper = _Grouper()
    problems: list[str] = []
    seen = 0
    for line, raw in _rows(path):
        seen += 1
        if not isinstance(raw, Mapping):
            problems.append(format_location(path, line, None, f"expected an object, got {type(raw).__name__}"))
            continue
        row = _apply_mapping(raw, mapping)
        misspelt = misspelling_problems(row, _COLUMNS, path, line)
        if misspelt:
            problems.extend(misspelt)
        elif "responses" in row:
            _ranked(path, line, row, grouper, problems)
        elif any(key in row for key in ("response_a", "response_b", "chosen", "rejected")):
            try:
                grouper.add_pair(PairItem.model_validate(row))
            except Exception as exc:  # pydantic ValidationError
                from rubrickit.data.items import _problems

                problems.extend(_problems(exc, path, line, PairItem))
        elif "prompt" in row and isinstance(row.get("reference"), str):
            prompt = _prompt(row, (path, line), problems)
            if prompt is None:
                continue
            prompt_id = row.get("prompt_id") or row.get("id")
            group = grouper.group(prompt, str(prompt_id) if prompt_id is not None else None, row.get("subset"))
            group.reference = group.reference or row["reference"]
            group.row_ids.append(str(row.get("id") or group.id))
        else:
            problems.append(format_location(path, line, None, "no responses: give response_a/response_b (+ label), "
                                            "chosen/rejected, a responses list, or prompt + reference "
                                            "(or map your columns with --map FIELD=COLUMN)"))
        if len(problems) >= 50:
            break
        if limit is not None and len(grouper.groups) > limit:
            break
    if problems:
        raise RubricError(problems)
    if not seen:
        no_rows(path, allow_empty=allow_empty)
    groups = list(grouper.groups.values())
    return groups[:limit] if limit is not None else groups
