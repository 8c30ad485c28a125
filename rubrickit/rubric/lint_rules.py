"""The lint rules: one small pure function per rule id, and :data:`RULES`, the id -> description catalogue.

A criterion rule takes ``(criterion, rubric)`` and a rubric rule takes ``(rubric)``; each returns the finding's
message, or ``None`` when the rubric is fine. ``near-duplicate`` compares criteria pairwise, so it has its own
signature. The heuristics are lexical and deterministic (no model calls): they aim for few false positives and
explain each finding with the words that triggered it. A new rule is a function here, its id in :data:`RULES` and
in ``_CRITERION_RULES`` or ``_RUBRIC_RULES``, and a row in docs/lint.md. :mod:`rubrickit.rubric.lint` runs them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from rubrickit._util.text import split_sentences
from rubrickit.rubric.model import Criterion, Rubric

__all__ = ["RULES"]

RULES: dict[str, str] = {
    "non-atomic": "a criterion bundles several checkable claims (two clauses, two sentences, a list)",
    "near-duplicate": "two criteria of a rubric say nearly the same thing, or one negates the other",
    "double-negative": "a negative weight on a negated statement (penalising an absence reads backwards)",
    "zero-weight": "a weight of 0 contributes nothing to the reward but still costs a judge call",
    "names-response": "the text names a specific response (Response A, the chosen response, …)",
    "scale-levels": "a scale with fewer than 2 levels, or two levels with the same description",
    "uncheckable-hard": "a hard criterion without a check rests on subjective wording (good, clear, …)",
    "vague-wording": "a principle says nothing but a vague verdict (good, helpful, high quality, …)",
    "question-form": "the text is a question; a criterion is a statement the judge decides holds",
    "penalty-only": "points aggregation without a positive weight: no response is ever scored",
    "hard-scale": "a hard criterion with a scale: it is silently not a gate (there is no pass/fail label)",
    "negative-scale": "a scale criterion has a negative weight, so a higher level lowers the reward",
    "check-mismatch": "the text states a different number or direction than its programmatic check",
}
"""Rule id -> one-line description (``rubrickit lint --list-rules``)."""


# --------------------------------------------------------------------------- words

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?(?:-[A-Za-z0-9]+)*")


def _words(text: str) -> list[str]:
    return [w.lower().replace("’", "'") for w in _WORD.findall(text)]


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


# Verbs rubric criteria use, in base form. Words that are just as often nouns ("lists", "notes") count as a
# verb only when an object follows ("notes the risks"), so "gives steps and notes" is not read as two clauses.
_VERBS = set(
    """
acknowledge admit advise apologize apologise ask avoid calculate cite clarify compare conclude confirm
consider contain define demonstrate derive describe discuss distinguish emphasize emphasise encourage
explain express greet highlight identify include indicate inform introduce invite justify maintain
mention offer omit outline prioritize prioritise propose provide recommend refer refuse reject remind
repeat respond restate reveal say specify suggest summarize summarise tell thank warn write adhere comply
mislead blame insult assume invent
""".split()
)
_AMBIGUOUS_VERBS = set(
    """
address answer begin check close correct cover direct end flag follow format give handle keep link list
make match name note open point present produce quote request respect return show start state stay stick
support use validate verify
""".split()
)
_AUXILIARIES = {"is", "are", "has", "does", "can", "should", "must", "will", "may", "might", "would", "could"}
_SUBJECTS = {"it", "they", "he", "she"}
_THIRD = {_third_person(v) for v in _VERBS}
_AMBIGUOUS_THIRD = {_third_person(v) for v in _AMBIGUOUS_VERBS}
_OBJECT_START = set(
    """
the a an that whether how what why when where which who its their his her any each every all no some one
two three at to it them this these those both only more fewer less your our whatever
""".split()
)
_DETERMINERS = set(
    """
the a an its their his her your any each every all no some whether how what why this these those them it
""".split()
)
_ADVERBS = {"also", "then", "never", "always", "still", "only", "further", "additionally", "not"}


def _is_verb_at(words: list[str], index: int) -> bool:
    """Whether ``words[index]`` reads as the verb that starts a predicate."""
    word = words[index]
    after = words[index + 1] if index + 1 < len(words) else None
    if word in _AUXILIARIES or word in _THIRD:
        return True
    if word in _AMBIGUOUS_THIRD or word in _VERBS:
        return after is not None and (after in _OBJECT_START or after.isdigit())
    return False


def _starts_clause(words: list[str]) -> bool:
    """Whether the words after a conjunction start a new clause (a verb or a subject of their own)."""
    index = 0
    while index < len(words) - 1 and (words[index] in _ADVERBS or words[index].endswith("ly")):
        index += 1
    if index >= len(words):
        return False
    if words[index] in _SUBJECTS or words[index : index + 2] == ["the", "response"]:
        return True
    if _is_verb_at(words, index):
        return True
    # A verb missing from the lists: an -s word right after the conjunction, followed by a determiner.
    word, after = words[index], words[index + 1] if index + 1 < len(words) else ""
    plural_like = len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is"))
    return plural_like and after in _DETERMINERS


def _has_verb(words: list[str]) -> bool:
    return any(_is_verb_at(words, i) for i in range(len(words)))


# --------------------------------------------------------------------------- non-atomic

_CONJUNCTION = re.compile(r"\b(and|but)\b\s+", re.IGNORECASE)
_ALWAYS_BUNDLES = re.compile(r"\b(as well as|and also|along with|in addition to)\b", re.IGNORECASE)
_SPLIT = "; split it into one criterion per claim so each verdict means one thing"
_EXPLANATION = re.compile(r"\b(?:which|because|since|due to|as it|so that)\b", re.IGNORECASE)
_PARENTHESES = re.compile(r"\([^)]*\)")
_PREPOSITIONS = {"in", "on", "at", "by", "for", "with", "from", "to", "of", "about", "as", "via", "per"}
_EXAMPLES = re.compile(r"\([^)]*\)|\b(?:e\.g\.|i\.e\.|such as|for example|for instance|including)\b.*", re.IGNORECASE)
_ENUMERATION = re.compile(r"(?:^|\s)\(?(?:1|a|i)[.)]\s.+\s\(?(?:2|b|ii)[.)]\s", re.IGNORECASE | re.DOTALL)
_PHRASE = r"([\w'’-]+(?: [\w'’-]+){0,3})"  # up to four words
_LIST = re.compile(rf"{_PHRASE}, {_PHRASE},? and {_PHRASE}")


def _non_atomic(criterion: Criterion, rubric: Rubric) -> str | None:
    bullets = sum(line.lstrip().startswith(("- ", "* ")) for line in criterion.text.splitlines())
    if _ENUMERATION.search(criterion.text) or bullets > 1:
        return f"an enumerated list of requirements{_SPLIT}"
    # Parentheses hold examples and justifications ("(Justification: …)"), not further claims.
    text = " ".join(_PARENTHESES.sub("", criterion.text).split())
    claims = [s for s in split_sentences(text) if _has_verb(_words(s))]
    if len(claims) > 1:
        return f"{len(claims)} sentences, each a claim{_SPLIT}"
    if ";" in text and all(len(_words(part)) >= 2 for part in text.split(";")):
        return f"clauses joined by ';'{_SPLIT}"
    bundles = _ALWAYS_BUNDLES.search(text)
    if bundles:
        return f"bundles claims with {bundles.group(1).lower()!r}{_SPLIT}"
    plain = _EXAMPLES.sub("", text)
    for match in _CONJUNCTION.finditer(plain):
        before, after = _words(plain[: match.start()]), _words(plain[match.end() :])
        if len(before) >= 2 and _starts_clause(after):
            joined = f"{match.group(1)} {' '.join(after[:3])}"
            return f"two clauses joined by {match.group(1).lower()!r} ('… {joined} …'){_SPLIT}"
    # A list inside an explanation ("…, which may cause confusion, headaches and seizures") is not required.
    for listed in _LIST.finditer(_EXPLANATION.split(plain, maxsplit=1)[0]):
        middle = _words(listed.group(2))
        # "a plan, considering the actions and constraints" is one phrase with a modifier, not a list.
        if middle and not _has_verb(middle) and not middle[0].endswith("ing") and middle[0] not in _PREPOSITIONS:
            shown = f"{listed.group(1).split()[-1]}, {listed.group(2)}, and {listed.group(3)}"
            return f"a list of requirements ('… {shown}'){_SPLIT}"
    return None


# --------------------------------------------------------------------------- near-duplicate

_NEGATIONS = {"not", "no", "never", "without", "fails", "fail", "omits", "lacks", "avoids", "neglects", "n't"}
_STOPWORDS = set(
    """
the a an and or of to in on for with at by from as is are be been being it its this that these those
there does do did response responses answer reply output should must will can would which who whom whose
if when any
""".split()
)
_NUMBER_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _content(text: str) -> tuple[list[str], int, frozenset[str]]:
    """Stemmed content words (without negations), the number of negations, and the numbers mentioned."""
    words: list[str] = []
    for word in _words(text):
        if word.endswith("n't"):
            words.extend([word[:-3], "n't"])
        else:
            words.append(word)
    negations = sum(w in _NEGATIONS for w in words)
    numbers = frozenset(str(_NUMBER_WORDS.get(w, w)) for w in words if w.isdigit() or w in _NUMBER_WORDS)
    content = [_stem(w) for w in words if w not in _NEGATIONS and w not in _STOPWORDS]
    return content, negations, numbers


def _similar(a: list[str], b: list[str]) -> bool:
    if not a or not b:
        return False
    sa, sb = set(a), set(b)
    # Few differing words in absolute terms, not just in proportion: long criteria that share a boilerplate
    # preamble are not duplicates.
    if sa == sb or (len(sa ^ sb) <= 3 and len(sa & sb) / len(sa | sb) >= 0.75 and len(sa | sb) >= 3):
        return True
    # Character-level similarity catches spelling variants the stemmer misses (summarises / summarizes); the
    # cheap upper bounds skip the quadratic ratio for most pairs.
    x, y = " ".join(a), " ".join(b)
    matcher = difflib.SequenceMatcher(None, x, y, autojunk=False)
    if matcher.real_quick_ratio() < 0.9 or matcher.quick_ratio() < 0.9 or matcher.ratio() < 0.9:
        return False
    return max(len(x), len(y)) - sum(block.size for block in matcher.get_matching_blocks()) <= 12


def _near_duplicates(rubric: Rubric, lines: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """(criterion id, message) for each criterion that repeats or negates an earlier one."""
    out: list[tuple[str, str]] = []
    seen: list[tuple[Criterion, tuple[list[str], int, frozenset[str]]]] = []
    for criterion in rubric.criteria:
        content, negations, numbers = _content(criterion.text)
        for earlier, (e_content, e_negations, e_numbers) in seen:
            if numbers != e_numbers or not _similar(content, e_content):
                continue
            line = lines.get((rubric.id, earlier.id))
            ref = f"{earlier.id!r}" + (f" (line {line})" if line is not None else "")
            if negations % 2 != e_negations % 2:
                out.append((criterion.id, f"the negation of {ref}: one fact counted twice; keep one of them"))
            else:
                out.append((criterion.id, f"nearly the same as {ref}; merge them or make the difference explicit"))
            break
        seen.append((criterion, (content, negations, numbers)))
    return out


# --------------------------------------------------------------------------- wording rules

_SUBORDINATE = re.compile(
    r"\b(that|which|who|whom|whose|when|whenever|if|unless|because|although|though|while|where|since|after|"
    r"before)\b",
    re.IGNORECASE,
)
_NEGATED = re.compile(
    r"\b((?:does|do|is|are|should|must|will|would|can|could|may) not|doesn['’]t|don['’]t|isn['’]t|aren['’]t|"
    r"shouldn['’]t|mustn['’]t|won['’]t|cannot|can['’]t|fails? to|"
    r"avoids?|never|omits?|lacks?|neglects? to|without|no)\b(?! (?:more|less|fewer|later|longer) than)",
    re.IGNORECASE,
)
_SUBJECT = re.compile(r"^\s*(?:the\s+)?(?:response|answer|reply|output|assistant|model|it)\b", re.IGNORECASE)


def _double_negative(criterion: Criterion, rubric: Rubric) -> str | None:
    if criterion.weight >= 0:
        return None
    # Only the main predicate counts: "states a policy that the ticket does not support", "gives a diagnosis
    # without an examination", "assumes the user does not …" and "(Justification: it lacks …)" penalise acts.
    text = _EXAMPLES.sub("", _PARENTHESES.sub("", criterion.text))
    main = _SUBJECT.sub("", _SUBORDINATE.split(text, maxsplit=1)[0])
    match = _NEGATED.search(main)
    if match is None:
        return None
    before = [w for w in _words(main[: match.start()]) if not w.endswith("ly") and w not in _AUXILIARIES]
    if len(before) > (1 if match.group(1).lower() in ("without", "no") else 0):
        return None
    return (
        f"negative weight on a negated statement ({match.group(0)!r}): penalising an absence reads "
        f"backwards to judges and readers; state what a good response does, with a positive weight"
    )


def _zero_weight(criterion: Criterion, rubric: Rubric) -> str | None:
    if criterion.weight != 0 or rubric.aggregation == "holistic":
        return None
    if criterion.kind == "hard" and rubric.gates == "hard" and criterion.scale is None:
        return None  # a weightless gate still vetoes: a deliberate pattern
    return (
        "weight 0 contributes nothing to the reward but still costs a judge call; give it a weight or "
        "remove it (tags give per-axis sub-scores without weights)"
    )


_NAMED_RESPONSE = re.compile(
    r"\b(?i:(?:response|output|completion|reply|assistant|model|candidate|generation|chatbot)s?)\s?"
    r"(?:\(\s*[A-Za-z0-9]\s*\)|[A-H]\b)"
    r"|\b(?i:(?:response|output|completion|reply|assistant|candidate|generation)s?)\s?#?\s?\d{1,2}\b"
    r"|\b(?i:(?:first|second|third|other|former|latter|chosen|rejected|preferred|dispreferred|winning|losing)\s+"
    r"(?:response|answer|output|completion|reply|assistant)s?)\b"
    r"|\b(?i:(?:both|either|neither)\s+(?:responses?|answers?|outputs?|completions?|assistants?))\b"
)


def _names_response(criterion: Criterion, rubric: Rubric) -> str | None:
    texts = [criterion.text, criterion.applies_if or "", *(criterion.scale or {}).values()]
    for text in texts:
        match = _NAMED_RESPONSE.search(text)
        if match:
            return (
                f"names a specific response ({match.group(0)!r}); a criterion is judged on one response "
                f"at a time and must apply to any response: describe the quality itself"
            )
    return None


def _scale_levels(criterion: Criterion, rubric: Rubric) -> str | None:
    if criterion.scale is None:
        return None
    if len(criterion.scale) < 2:
        return (
            f"the scale has {len(criterion.scale)} level; a judge cannot choose between levels: anchor "
            f"at least two (e.g. 1 and 5) or drop the scale"
        )
    seen: dict[str, int] = {}
    for level, text in criterion.scale.items():
        key = " ".join(_words(text))
        if key in seen:
            return f"levels {seen[key]} and {level} have the same description; give each level its own anchor"
        seen[key] = level
    return None


_SUBJECTIVE_TERMS = """
good great excellent nice appropriate appropriately adequate adequately helpful useful high-quality
well-written well-structured well-organized reasonable reasonably proper properly satisfactory acceptable
effective effectively suitable suitably sufficient sufficiently clear clearly engaging interesting
compelling concise professional friendly polished elegant natural fluent thorough comprehensive detailed
relevant coherent readable insightful creative overly excessive excessively enough
""".split()
_SUBJECTIVE = re.compile(
    r"\b(high[- ]quality|well[- ]written|too (?:long|short)|"
    + "|".join(sorted(set(_SUBJECTIVE_TERMS), key=len, reverse=True))
    + r")\b",
    re.IGNORECASE,
)


def _uncheckable_hard(criterion: Criterion, rubric: Rubric) -> str | None:
    if criterion.kind != "hard" or criterion.check is not None:
        return None
    terms = list(dict.fromkeys(m.group(0).lower() for m in _SUBJECTIVE.finditer(criterion.text)))
    if not terms:
        return None
    return (
        f"hard criteria are objective constraints, but this one rests on subjective wording "
        f"({', '.join(repr(t) for t in terms)}); state a verifiable condition, add a check, or make it a "
        f"principle"
    )


_EVALUATIVE = (
    set(
        """
good great excellent nice appropriate appropriately adequate adequately helpful useful high quality
high-quality well-written written well reasonable reasonably proper properly satisfactory acceptable effective
effectively solid strong decent fine ideal perfect suitable suitably sufficient sufficiently correct
accurate better best bad poor weak impressive superior optimal overall generally very really quite highly
extremely helpfulness user user's users task request question prompt is seems appears looks reads be
""".split()
    )
    | _STOPWORDS
)


def _vague_wording(criterion: Criterion, rubric: Rubric) -> str | None:
    if criterion.kind != "principle" or criterion.check is not None or criterion.scale is not None:
        return None
    words = _words(criterion.text)
    if not words or any(w not in _EVALUATIVE for w in words):
        return None
    return (
        "says only that the response is good in a vague way; name the observable behaviour that makes it "
        "good (what it contains, does or avoids) so judges agree on the verdict"
    )


def _question_form(criterion: Criterion, rubric: Rubric) -> str | None:
    if not criterion.text.rstrip().endswith("?"):
        return None
    return (
        "phrased as a question; a criterion is a statement the judge decides holds — e.g. 'Does the "
        "response cite a source?' becomes 'The response cites a source.'"
    )


def _hard_scale(criterion: Criterion, rubric: Rubric) -> str | None:
    if criterion.kind != "hard" or criterion.scale is None or rubric.gates != "hard":
        return None
    return (
        "a hard criterion with a scale is not a gate (a level has no pass/fail label), so it never vetoes; "
        "state the constraint as a met/unmet statement, or make it a principle"
    )


def _negative_scale(criterion: Criterion, rubric: Rubric) -> str | None:
    if criterion.scale is None or criterion.weight >= 0:
        return None
    return (
        "a scale with a negative weight: a higher level lowers the reward, the opposite of how levels "
        "read in reports; reverse the anchors so the top level is best and use a positive weight"
    )


_UPPER = re.compile(
    r"\b(at most|no more than|not more than|up to|fewer than|less than|under|maximum|max|"
    r"not exceed|does not exceed|below|shorter than)\b",
    re.IGNORECASE,
)
_LOWER = re.compile(
    r"\b(at least|no fewer than|no less than|not less than|more than|over|minimum|min|above|"
    r"longer than)\b",
    re.IGNORECASE,
)


def _check_direction(check: object) -> str | None:
    kind = str(getattr(check, "type", ""))
    relation = str(getattr(check, "relation", ""))
    if kind.startswith("max_") or relation in ("at most", "less than"):
        return "upper"
    if kind.startswith("min_") or relation in ("at least", "more than"):
        return "lower"
    return None


def _check_mismatch(criterion: Criterion, rubric: Rubric) -> str | None:
    value = getattr(criterion.check, "value", None)
    if criterion.check is None or not isinstance(value, int) or isinstance(value, bool):
        return None
    words = _words(criterion.text)
    numbers = {int(_NUMBER_WORDS.get(w, w)) for w in words if w.isdigit() or w in _NUMBER_WORDS}
    if numbers and value not in numbers:
        stated = ", ".join(str(n) for n in sorted(numbers))
        return (
            f"the text says {stated} but the check tests {value}; make them agree (the check decides the "
            f"verdict, the text is what people read)"
        )
    direction = _check_direction(criterion.check)
    text_up, text_low = bool(_UPPER.search(criterion.text)), bool(_LOWER.search(criterion.text))
    if direction == "upper" and text_low and not text_up or direction == "lower" and text_up and not text_low:
        bound = "an upper" if direction == "upper" else "a lower"
        return f"the check sets {bound} bound but the text states the opposite; make them agree"
    return None


_CRITERION_RULES: dict[str, Callable[[Criterion, Rubric], str | None]] = {
    "non-atomic": _non_atomic,
    "double-negative": _double_negative,
    "zero-weight": _zero_weight,
    "names-response": _names_response,
    "scale-levels": _scale_levels,
    "uncheckable-hard": _uncheckable_hard,
    "vague-wording": _vague_wording,
    "question-form": _question_form,
    "hard-scale": _hard_scale,
    "negative-scale": _negative_scale,
    "check-mismatch": _check_mismatch,
}


def _penalty_only(rubric: Rubric) -> str | None:
    # weighted_mean scores a penalty-only rubric as 1 + Σw·m/Σ|w|; points divides by the positive points.
    if rubric.aggregation != "points" or any(c.weight > 0 for c in rubric.criteria):
        return None
    if not any(c.weight < 0 for c in rubric.criteria):
        return None  # all weights 0: the zero-weight rule says it
    return (
        "no criterion has a positive weight: points aggregation divides by the positive points, so no "
        "response is ever scored (reward None); add what a good response does, or use weighted_mean, "
        "which scores a penalty-only rubric as 1 + Σ w·m / Σ |w|"
    )


def _all_zero(rubric: Rubric) -> str | None:
    if rubric.aggregation == "holistic" or any(c.weight != 0 for c in rubric.criteria):
        return None
    return (
        "every weight is 0: the reward is always None (0 with sum aggregation), whatever the verdicts; "
        "give the criteria weights"
    )


_RUBRIC_RULES: dict[str, Callable[[Rubric], str | None]] = {
    "penalty-only": _penalty_only,
    "zero-weight": _all_zero,
}
