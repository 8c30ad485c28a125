"""Theme-Tips structuring (Auto-Rubric, "Auto-Rubric: Learning to Extract Generalizable Criteria for Reward
Modeling"): a flat set of criteria becomes a few *themes*, each a general statement followed by concrete *tips*.

The generator model sees the criteria (id and text, penalties marked) and answers
``{"themes": [{"theme", "tips", "criteria": [ids]}]}`` (``prompts/themes.j2``). Its reply is validated, never
trusted:

- at most ``max_themes`` themes and ``max_tips`` tips per theme are kept (the rest is dropped and counted);
- a criterion id that is not in the input is dropped and counted; each input criterion ends up in at most one theme
  (a repeat in a later theme is dropped and counted);
- a theme must cover at least one input criterion — a theme that covers none is invented content and is dropped;
- a theme mixing qualities and penalties keeps the polarity of most of its criteria (the first one's on a tie) and
  drops the others' ids (counted), so a theme's weight has one meaning.

Every surviving theme becomes one :class:`~rubrickit.rubric.Criterion`: ``text`` is the theme statement, then
``Tips:`` and one ``- tip`` per line; ``tags: ["theme"]``; ``source_ids`` are the ids of the criteria it covers;
``weight`` is the mean absolute weight of those criteria with their shared sign; ``kind`` is ``hard`` only when all of
them are hard. When no theme survives (or the reply cannot be read after the re-asks) :class:`GenerationFailed` is
raised with the reason, and the caller keeps its flat criteria.

The reply may also be a bare JSON list of themes, and the keys may be spelled a little differently (``Themes``,
``theme_list``; ``statement``/``title`` for the theme; ``ids``/``criterion_ids``/``source_ids`` for the criteria).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from rubrickit.judge.generator import GenerationFailed, Generator, Stats, criterion_slug
from rubrickit.judge.reply_schemas import themes_schema

from ..judge.prompts import neutralize
from ..rubric import Criterion

__all__ = ["structure_themes", "theme_text"]

T = TypeVar("T")

_TEMPLATE = "themes"


def theme_text(statement: str, tips: Sequence[str]) -> str:
    """A theme criterion's text: the statement, then ``Tips:`` and one ``- tip`` per line (no tips: the statement)."""
    statement = statement.strip()
    if not tips:
        return statement
    return statement + "\nTips:\n" + "\n".join(f"- {tip}" for tip in tips)


async def structure_themes(criteria: list[Criterion], generator: Generator, *, max_themes: int = 5,
                           max_tips: int = 5, salt: str = "", stats: Stats | None = None) -> list[Criterion]:
    """Group ``criteria`` into at most ``max_themes`` theme criteria with at most ``max_tips`` tips each.

    Each returned criterion carries ``tags: ["theme"]`` and ``source_ids`` (the ids of the input criteria it covers).
    ``stats`` (optional) counts what validation dropped: ``themes_unknown_ids``, ``themes_repeated_ids``,
    ``themes_polarity_dropped``, ``themes_extra_dropped``, ``themes_tips_dropped``, ``themes_empty_dropped``,
    ``themes_uncovered`` (input criteria no theme covers). Raises :class:`GenerationFailed` when the generator's reply
    is unusable (after its re-asks) or no theme survives validation.
    """
    if not criteria:
        raise GenerationFailed("no criteria to structure into themes")
    if max_themes < 1 or max_tips < 0:
        raise GenerationFailed(f"themes need max_themes >= 1 and max_tips >= 0 (got {max_themes}, {max_tips})")
    by_id = {c.id: c for c in criteria}
    variables = {
        "criteria": [{"id": c.id, "text": neutralize(" ".join(c.text.split())), "penalty": c.weight < 0}
                     for c in criteria],
        "max_themes": max_themes,
        "max_tips": max_tips,
    }
    counts = Stats()

    def parse(obj: dict[str, Any]) -> list[Criterion]:
        local = Stats()
        themes = _validate(obj, by_id, max_themes, max_tips, local)
        counts.counts.clear()
        counts.merge(local)
        return themes

    themes = await ajson_lenient(generator, _TEMPLATE, variables, parse, salt=f"themes:{salt}", list_key="themes",
                                 schema=themes_schema(list(by_id), max_themes, max_tips))
    covered = {sid for theme in themes for sid in theme.source_ids}
    counts.add("themes_uncovered", sum(1 for c in criteria if c.id not in covered))
    if stats is not None:
        stats.merge(counts)
    return themes


def _validate(obj: Mapping[str, Any], by_id: Mapping[str, Criterion], max_themes: int, max_tips: int,
              stats: Stats) -> list[Criterion]:
    raw = _list_field(obj, ("themes", "themelist", "theme", "groups", "items"))
    if raw is None:
        raise ValueError('expected an object with a "themes" list')
    used: set[str] = set()
    taken: set[str] = set()
    out: list[Criterion] = []
    for item in raw:
        if len(out) >= max_themes:
            stats.add("themes_extra_dropped")
            continue
        if not isinstance(item, Mapping):
            stats.add("themes_empty_dropped")
            continue
        statement = _text_field(item, ("theme", "statement", "title", "name", "text", "description"))
        ids = _ids(item, by_id, used, stats)
        if not statement or not ids:
            stats.add("themes_empty_dropped")
            continue
        ids = _one_polarity(ids, by_id, stats)
        tips = _tips(item)
        if len(tips) > max_tips:
            stats.add("themes_tips_dropped", len(tips) - max_tips)
            tips = tips[:max_tips]
        used.update(ids)
        sources = [by_id[i] for i in ids]
        sign = -1.0 if sources[0].weight < 0 else 1.0
        weight = sign * sum(abs(c.weight) for c in sources) / len(sources)
        categories = {c.category for c in sources}
        out.append(Criterion(
            id=criterion_slug(statement, taken, prefix="theme-"), text=theme_text(statement, tips),
            kind="hard" if all(c.kind == "hard" for c in sources) else "principle",
            weight=weight if weight != 0 else sign, category=categories.pop() if len(categories) == 1 else None,
            tags=["theme"], source_ids=ids,
        ))
    if not out:
        raise ValueError("no theme covers any listed criterion id; list the ids each theme covers")
    return out


def _norm_key(key: Any) -> str:
    return re.sub(r"[^a-z]", "", str(key).lower())


def _list_field(obj: Mapping[str, Any], names: Sequence[str]) -> list[Any] | None:
    for key, value in obj.items():
        if _norm_key(key) in names and isinstance(value, list):
            return value
    return None


def _text_field(item: Mapping[str, Any], names: Sequence[str]) -> str:
    for name in names:
        for key, value in item.items():
            if _norm_key(key) == name and isinstance(value, str) and value.strip():
                return " ".join(value.split())
    return ""


def _tips(item: Mapping[str, Any]) -> list[str]:
    raw = _list_field(item, ("tips", "tip", "hints", "checks"))
    if raw is None:
        return []
    tips = []
    for tip in raw:
        text = tip if isinstance(tip, str) else _text_field(tip, ("tip", "text")) if isinstance(tip, Mapping) else ""
        text = " ".join(str(text).split()).lstrip("-• ").strip()
        if text and text not in tips:
            tips.append(text)
    return tips


def _ids(item: Mapping[str, Any], by_id: Mapping[str, Criterion], used: set[str], stats: Stats) -> list[str]:
    raw = _list_field(item, ("criteria", "criterionids", "criteriaids", "ids", "sourceids", "covers", "covered"))
    out: list[str] = []
    for value in raw or []:
        cid = str(value).strip() if isinstance(value, (str, int)) else ""
        if cid not in by_id:
            stats.add("themes_unknown_ids")
        elif cid in used or cid in out:
            stats.add("themes_repeated_ids")
        else:
            out.append(cid)
    return out


def _one_polarity(ids: list[str], by_id: Mapping[str, Criterion], stats: Stats) -> list[str]:
    penalties = [i for i in ids if by_id[i].weight < 0]
    if not penalties or len(penalties) == len(ids):
        return ids
    keep_penalties = len(penalties) > len(ids) - len(penalties) or (
        len(penalties) * 2 == len(ids) and by_id[ids[0]].weight < 0)
    kept = [i for i in ids if (by_id[i].weight < 0) == keep_penalties]
    stats.add("themes_polarity_dropped", len(ids) - len(kept))
    return kept


# --------------------------------------------------------------------------- lenient JSON replies


def bare_json_list(text: str) -> list[Any] | None:
    """The reply's top-level JSON list when the whole reply (code fences and surrounding prose aside) is one list
    rather than an object; ``None`` otherwise. Python-style quoting is accepted."""
    stripped = re.sub(r"```[a-zA-Z]*", "", text).strip()
    start, end = stripped.find("["), stripped.rfind("]")
    if start < 0 or end <= start or "{" in stripped[:start]:
        return None
    chunk = stripped[start:end + 1]
    for loads in (json.loads, ast.literal_eval):
        try:
            value = loads(chunk)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return value if isinstance(value, list) else None
    return None


async def ajson_lenient(generator: Generator, template: str, variables: Mapping[str, Any],
                        parse: Callable[[dict[str, Any]], T], *, salt: str, list_key: str,
                        schema: Mapping[str, Any] | None = None) -> T:
    """:meth:`Generator.ajson`, also accepting a reply that is a bare JSON list (read as ``{list_key: list}``).

    The first reply is read as text; when it is a usable bare list it is parsed at once, otherwise the same request
    goes through :meth:`Generator.ajson` (the identical first request, ``schema`` included, is answered by the
    engine's deduplication, so no extra model call is made) and its re-asks.
    """
    text = await generator.atext(template, variables, salt=salt, schema=schema)
    items = bare_json_list(text)
    if items is not None:
        try:
            return parse({list_key: items})
        except (ValueError, TypeError, KeyError, ValidationError):
            pass
    return await generator.ajson(template, variables, parse, salt=salt, schema=schema)
