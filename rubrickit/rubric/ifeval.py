"""IFEval's 25 verifiable instruction types mapped to rubrickit checks.

:func:`check_from_ifeval` turns one IFEval instruction (``instruction_id`` plus its ``kwargs``) into a check that
behaves like the IFEval reference checker; :func:`ifeval_coverage` measures the mapping on an IFEval file.
Re-exported by :mod:`rubrickit.rubric.checks`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rubrickit.rubric.checks import (
    BulletCountCheck,
    CapitalWordCountCheck,
    CaseCheck,
    CheckSpec,
    EndsWithCheck,
    ForbiddenKeywordsCheck,
    HighlightCountCheck,
    JsonCheck,
    KeywordFrequencyCheck,
    LanguageCheck,
    LetterFrequencyCheck,
    NoCommasCheck,
    OneOfCheck,
    ParagraphCountCheck,
    ParagraphFirstWordCheck,
    PlaceholderCountCheck,
    PostscriptCheck,
    QuotedCheck,
    RequiredKeywordsCheck,
    SectionCountCheck,
    SentenceCountCheck,
    StartsWithCheck,
    TitleCheck,
    TwoResponsesCheck,
    WordCountCheck,
)
from rubrickit.rubric.checks.base import _Check

__all__ = ["IFEVAL_TYPES", "check_from_ifeval", "ifeval_coverage"]

IFEVAL_TYPES: tuple[str, ...] = (
    "keywords:existence", "keywords:frequency", "keywords:forbidden_words", "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences", "length_constraints:number_paragraphs",
    "length_constraints:number_words", "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders", "detectable_content:postscript",
    "detectable_format:number_bullet_lists", "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections", "detectable_format:multiple_sections",
    "detectable_format:json_format", "detectable_format:title",
    "combination:two_responses", "combination:repeat_prompt",
    "startend:end_checker", "startend:quotation",
    "change_case:capital_word_frequency", "change_case:english_capital", "change_case:english_lowercase",
    "punctuation:no_comma",
)  # fmt: skip
"""The 25 instruction ids of IFEval (Zhou et al., 2023), in the order of its instruction registry."""

_IFEVAL_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")

# Each builder turns an instruction's kwargs (None values dropped) into the check with IFEval's semantics.
_IFEVAL_BUILDERS: dict[str, Callable[[dict[str, Any]], _Check]] = {
    "keywords:existence": lambda k: RequiredKeywordsCheck(words=k["keywords"], whole_word=False),
    "keywords:frequency": lambda k: KeywordFrequencyCheck(
        word=k["keyword"], relation=k["relation"], value=k["frequency"], whole_word=False
    ),
    "keywords:forbidden_words": lambda k: ForbiddenKeywordsCheck(words=k["forbidden_words"]),
    "keywords:letter_frequency": lambda k: LetterFrequencyCheck(
        letter=k["letter"].strip().lower(), relation=k["let_relation"], value=k["let_frequency"]
    ),
    "language:response_language": lambda k: LanguageCheck(code=k["language"]),
    "length_constraints:number_sentences": lambda k: SentenceCountCheck(
        relation=k["relation"], value=k["num_sentences"]
    ),
    "length_constraints:number_paragraphs": lambda k: ParagraphCountCheck(
        relation="exactly", value=k["num_paragraphs"], separator="***"
    ),
    "length_constraints:number_words": lambda k: WordCountCheck(relation=k["relation"], value=k["num_words"]),
    "length_constraints:nth_paragraph_first_word": lambda k: ParagraphFirstWordCheck(
        n=k["nth_paragraph"], word=k["first_word"], paragraphs=k["num_paragraphs"]
    ),
    "detectable_content:number_placeholders": lambda k: PlaceholderCountCheck(
        relation="at least", value=k["num_placeholders"]
    ),
    "detectable_content:postscript": lambda k: PostscriptCheck(marker=k["postscript_marker"]),
    "detectable_format:number_bullet_lists": lambda k: BulletCountCheck(
        relation="exactly", value=k["num_bullets"], syntax="ifeval"
    ),
    "detectable_format:constrained_response": lambda k: OneOfCheck(
        options=_IFEVAL_OPTIONS, match="contains", case_sensitive=True
    ),
    "detectable_format:number_highlighted_sections": lambda k: HighlightCountCheck(
        relation="at least", value=k["num_highlights"]
    ),
    "detectable_format:multiple_sections": lambda k: SectionCountCheck(
        relation="at least", value=k["num_sections"], marker=k["section_spliter"].strip()
    ),
    "detectable_format:json_format": lambda k: JsonCheck(),
    "detectable_format:title": lambda k: TitleCheck(),
    "combination:two_responses": lambda k: TwoResponsesCheck(),
    "combination:repeat_prompt": lambda k: StartsWithCheck(text=k["prompt_to_repeat"]),
    "startend:end_checker": lambda k: EndsWithCheck(text=k["end_phrase"], ignore_quotes=True),
    "startend:quotation": lambda k: QuotedCheck(),
    "change_case:capital_word_frequency": lambda k: CapitalWordCountCheck(
        relation=k["capital_relation"], value=k["capital_frequency"]
    ),
    "change_case:english_capital": lambda k: CaseCheck(style="upper", language="en"),
    "change_case:english_lowercase": lambda k: CaseCheck(style="lower", language="en"),
    "punctuation:no_comma": lambda k: NoCommasCheck(),
}


def check_from_ifeval(instruction_id: str, kwargs: dict[str, Any] | None) -> CheckSpec | None:
    """The check equivalent to one IFEval instruction, or None for an instruction id without a mapping.

    ``kwargs`` are the instruction's arguments as in IFEval's ``input_data.jsonl``; keys whose value is None
    are ignored (the Hugging Face copy lists every key on every record). Raises ValueError when a required
    argument is missing and :class:`pydantic.ValidationError` when one is invalid.
    """
    build = _IFEVAL_BUILDERS.get(instruction_id)
    if build is None:
        return None
    args = {key: value for key, value in (kwargs or {}).items() if value is not None}
    try:
        return build(args)  # type: ignore[return-value]
    except KeyError as err:
        raise ValueError(
            f"IFEval instruction {instruction_id!r} needs the argument {err.args[0]!r}; got {sorted(args)}"
        ) from None


def ifeval_coverage(path: str | Path) -> dict[str, Any]:
    """Measure how much of an IFEval prompt file :func:`check_from_ifeval` maps to checks.

    ``path`` is JSONL (gzipped if it ends in ``.gz``) with aligned ``instruction_id_list`` and ``kwargs`` per
    record. Returns ``types_total``/``types_covered`` (distinct instruction ids), ``instructions_total``/
    ``instructions_covered`` (instructions over all prompts) and ``uncovered`` (ids without a check, sorted).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    seen: set[str] = set()
    uncovered: set[str] = set()
    total = covered = 0
    with opener(path, "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    for record in records:
        for instruction_id, kwargs in zip(record["instruction_id_list"], record["kwargs"], strict=True):
            total += 1
            seen.add(instruction_id)
            if check_from_ifeval(instruction_id, kwargs) is None:
                uncovered.add(instruction_id)
            else:
                covered += 1
    return {
        "types_total": len(seen),
        "types_covered": len(seen - uncovered),
        "instructions_total": total,
        "instructions_covered": covered,
        "uncovered": sorted(uncovered),
    }
