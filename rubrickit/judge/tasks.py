"""Task expansion: (item × criterion) → tasks, each a programmatic check or a judge request built from a template.

A :class:`Task` decides one or more criteria of one response: a ``check`` (decided locally, no call), or a
:class:`Call` — the exact :class:`~rubrickit.backends.base.CompletionRequest` to send and how to read its reply.
Which template and reply contract each criterion gets depends on the mode (see docs/judging.md):

============== ================================================================================================
mode           criteria without a scale                                scale criteria
============== ================================================================================================
per_criterion  ``per_criterion`` (JSON verdict), one call each          ``scale`` (JSON level)
per_response   one ``per_response`` call for all criteria of the response (levels for scale criteria)
logprob        ``logprob`` (one token Yes/No)                          ``scale`` as one digit when the backend gives
                                                                       probabilities and the levels are digits,
                                                                       else JSON
likert         ``per_criterion``                                       like logprob mode
holistic       one ``holistic`` call: a 1–10 rating against all criteria
============== ================================================================================================

A criterion with ``applies_if`` that is judged with one token (a Yes/No or a digit question) gets a second one-token
question, ``condition`` ("does the condition hold for this conversation?", Yes/No): its task carries both calls
(:attr:`Task.condition` and :attr:`Task.call`), and the criterion is ``not_applicable`` when P(Yes) of the condition
is below 0.5 (see :func:`rubrickit.judge.modes.task_verdicts`). The condition prompt has the same instructions and
material as the ``logprob`` prompt, so every Yes/No question about one response shares one prefix.

Pairwise judgments (direct, and per criterion) ask for JSON ``{"rationale", "winner"}`` (``pairwise_direct``,
``pairwise_criterion``), except in logprob mode on a backend with token probabilities, where they ask for one token
A/B (``pairwise_choice``, ``pairwise_choice_criterion``) and P(A) is read from the probabilities.

Programmatic checks (``criterion.check``) are always decided locally. A rubric whose ``aggregation`` is
``holistic`` is judged with the holistic rating whatever the mode. Requests carry ``json_schema`` when the backend
honours structured output and ``choices`` when it honours constrained choice; repeat ``r > 0`` sets ``seed=r`` and
the cache salt ``repeat=r``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rubrickit.data.items import stable_id
from rubrickit.rubric.checks import run_check

from ..backends.base import Capabilities, CompletionRequest
from ..errors import RubricError
from ..rubric import Criterion, Rubric, RubricSet, Verdict
from . import parse
from .prompts import PromptLibrary, RenderedPrompt, criterion_data, material_data, pair_material_data

__all__ = ["AB", "Call", "Mode", "Reader", "Task", "TaskBuilder", "assign_rubrics", "build_plan", "check_verdict",
           "repeat_salt"]

Mode = Literal["per_criterion", "per_response", "logprob", "likert", "holistic"]
"""The judging modes."""

Reader = Literal["verdict", "level", "digit", "rating", "winner", "yes_no", "per_response", "ab"]
"""How a reply is read (which parser of :mod:`rubrickit.judge.parse`)."""

YES_NO = ("Yes", "No")
"""The two one-token answers of logprob mode."""

AB = ("A", "B")
"""The two one-token answers of a pairwise judgment in logprob mode (the response shown first or second)."""

# Expected reply length per reader, for --dry-run token estimates (capped at the request's max_tokens).
_OUTPUT_ESTIMATE = {"verdict": 60, "level": 60, "rating": 100, "winner": 70, "per_response": 60, "yes_no": 1,
                    "digit": 1, "ab": 1}


def repeat_salt(repeat: int) -> str:
    """The cache salt of repeat ``repeat``: empty for the first, so a plain run and repeat 0 share the cache."""
    return f"repeat={repeat}" if repeat > 0 else ""


@dataclass(frozen=True)
class Call:
    """One judge request and how to read its reply."""

    request: CompletionRequest
    """The exact request sent (the cache key hashes it)."""
    reader: Reader
    """How the reply is read."""
    contract: str
    """The reply format, quoted by a re-ask."""
    salt: str = ""
    """Cache salt (the repeat)."""
    low: int = 0
    """Lowest level (``level``/``digit``) or rating."""
    high: int = 0
    """Highest level or rating."""
    allow_na: bool = False
    """Whether a level may be ``not_applicable`` (the criterion has a condition)."""
    scales: tuple[tuple[str, tuple[int, int] | None], ...] = ()
    """Per-response: each criterion id with its level range (``None`` for met/unmet criteria)."""
    choices: tuple[str, ...] | None = None
    """The one-token answers a :class:`~rubrickit.backends.base.ChoiceScorer` scores (``yes_no``, ``digit``)."""
    question: Literal["criterion", "condition"] = "criterion"
    """What the call asks: the criterion itself, or whether its condition (``applies_if``) holds."""

    def output_estimate(self) -> int:
        """Expected generated tokens (for plans)."""
        per = _OUTPUT_ESTIMATE[self.reader] * (max(1, len(self.scales)) if self.reader == "per_response" else 1)
        return min(per, self.request.max_tokens)


@dataclass(frozen=True)
class Task:
    """The judgment of one or more criteria of one response: a local check or a call."""

    kind: Literal["check", "criterion", "scale", "logprob", "digit", "per_response", "holistic"]
    """What decides it."""
    criteria: tuple[Criterion, ...]
    """The criteria it decides (empty only for a holistic rating of a rubric of checks)."""
    call: Call | None = None
    """The judge request (``None`` for a check)."""
    verdict: Verdict | None = None
    """The verdict of a check, decided when the task was built."""
    condition: Call | None = None
    """One-token judging of a criterion with ``applies_if``: the Yes/No question whether the condition holds, sent
    together with :attr:`call` (the criterion's own question); ``None`` otherwise."""

    @property
    def calls(self) -> tuple[Call, ...]:
        """Every call of the task: the condition question (if any), then the criterion's call."""
        return tuple(c for c in (self.condition, self.call) if c is not None)


def check_verdict(criterion: Criterion, response: str) -> Verdict:
    """Run a criterion's programmatic check: met/unmet with the check's detail as rationale (error if it fails)."""
    assert criterion.check is not None
    try:
        outcome = run_check(criterion.check, response)
    except Exception as error:  # a check that crashes on odd input is an error verdict, not a crash of the run
        return Verdict(criterion_id=criterion.id, verdict="error", error=f"check failed: {type(error).__name__}: "
                       f"{error}")
    return Verdict(criterion_id=criterion.id, verdict="met" if outcome.met else "unmet", rationale=outcome.detail)


def _digit_levels(criterion: Criterion) -> bool:
    return bool(criterion.scale) and min(criterion.scale) >= 0 and max(criterion.scale) <= 9


@dataclass
class TaskBuilder:
    """Builds the tasks and requests of one judge configuration."""

    library: PromptLibrary
    """The prompt templates."""
    capabilities: Capabilities
    """What the backend honours (structured output, choices, logprobs)."""
    mode: Mode = "per_criterion"
    """The judging mode."""
    max_tokens: int = 512
    """``max_tokens`` of JSON replies (one-token replies ask for 1)."""
    temperature: float = 0.0
    """Sampling temperature."""
    choice_scorer: bool = False
    """Whether the backend implements :class:`~rubrickit.backends.base.ChoiceScorer`."""

    @property
    def probabilities(self) -> bool:
        """Whether one-token answers come with probabilities (logprobs or a choice scorer)."""
        return self.capabilities.logprobs or self.choice_scorer

    @property
    def pair_one_token(self) -> bool:
        """Whether pairwise judgments ask for one token A/B (logprob mode with probabilities) instead of JSON."""
        return self.mode == "logprob" and self.probabilities

    # ------------------------------------------------------------------ requests

    def request(self, prompt: RenderedPrompt, repeat: int, *, schema: dict | None = None, one_token: bool = False,
                top_logprobs: int = 5, choices: Sequence[str] | None = None) -> CompletionRequest:
        """The request for a rendered prompt under this configuration."""
        options: dict[str, Any] = {"max_tokens": 1 if one_token else self.max_tokens,
                                   "temperature": self.temperature, "seed": repeat if repeat > 0 else None}
        if one_token:
            options.update(logprobs=self.capabilities.logprobs, top_logprobs=top_logprobs if
                           self.capabilities.logprobs else 0)
            if choices is not None and self.capabilities.choices:
                options["choices"] = tuple(choices)
        elif schema is not None and self.capabilities.json_schema:
            options["json_schema"] = schema
        return CompletionRequest(messages=prompt.messages, **options)

    def _call(self, name: str, variables: dict[str, Any], repeat: int, reader: Reader, *,
              schema: dict | None = None, **extra: Any) -> Call:
        prompt = self.library.render(name, variables)
        one_token = reader in ("yes_no", "digit", "ab")
        choices = extra.get("choices")
        top = max(5, min(20, len(choices) + 3)) if choices else 5
        request = self.request(prompt, repeat, schema=schema, one_token=one_token, top_logprobs=top, choices=choices)
        return Call(request=request, reader=reader, contract=prompt.contract, salt=repeat_salt(repeat), **extra)

    # ------------------------------------------------------------------ single responses

    def calls_per_item(self, rubric: Rubric) -> int:
        """About how many judge calls one item makes under ``rubric`` (for pacing; re-asks not counted)."""
        judged = [c for c in rubric.criteria if c.check is None]
        if not judged:
            return 0
        if self.mode in ("holistic", "per_response") or rubric.aggregation == "holistic":
            return 1
        return len(judged) + sum(1 for c in judged if c.applies_if is not None)

    def item_tasks(self, rubric: Rubric, item: Any, repeat: int = 0) -> list[Task]:
        """The tasks judging ``item`` (a :class:`~rubrickit.data.items.DataItem`) under ``rubric``."""
        material = material_data(item.prompt, item.response, item.reference)
        tasks = [Task("check", (c,), verdict=check_verdict(c, item.response)) for c in rubric.criteria if c.check]
        judged = [c for c in rubric.criteria if c.check is None]
        if self.mode == "holistic" or rubric.aggregation == "holistic":
            tasks.append(self._holistic(judged, material, repeat))
        elif self.mode == "per_response":
            if judged:
                tasks.append(self._per_response(judged, material, repeat))
        else:
            tasks.extend(self._single(criterion, material, repeat) for criterion in judged)
        return tasks

    def _single(self, criterion: Criterion, material: dict[str, Any], repeat: int) -> Task:
        one_token = self.mode in ("logprob", "likert") and self.probabilities
        if criterion.scale:
            if one_token and _digit_levels(criterion):
                call = self._scale_call(criterion, material, repeat, "digit")
                condition = self._condition_call(criterion, material, repeat)
                return Task("digit", (criterion,), call=call, condition=condition)
            return Task("scale", (criterion,), call=self._scale_call(criterion, material, repeat, "json"))
        variables = {**material, "criterion": criterion_data(criterion)}
        if one_token and self.mode == "logprob":
            call = self._call("logprob", variables, repeat, "yes_no", choices=YES_NO)
            return Task("logprob", (criterion,), call=call,
                        condition=self._condition_call(criterion, material, repeat))
        call = self._call("per_criterion", variables, repeat, "verdict", schema=_VERDICT_SCHEMA)
        return Task("criterion", (criterion,), call=call)

    def _condition_call(self, criterion: Criterion, material: dict[str, Any], repeat: int) -> Call | None:
        """The one-token question whether the criterion's condition holds (``None`` without ``applies_if``).

        The prompt shows the condition, not the criterion, so criteria with the same condition ask one identical
        question (deduplicated: answered once).
        """
        if criterion.applies_if is None:
            return None
        data = criterion_data(criterion)
        variables = {**material, "criterion": data, "condition": data["applies_if"]}
        return self._call("condition", variables, repeat, "yes_no", choices=YES_NO, question="condition")

    def _scale_call(self, criterion: Criterion, material: dict[str, Any], repeat: int, answer: str) -> Call:
        data = criterion_data(criterion)
        low, high = data["low"], data["high"]
        na = criterion.applies_if is not None
        if answer == "digit":
            # A digit cannot say "not applicable": the condition is a question of its own (_condition_call), and
            # the level is asked as if it applies (the scale template then shows no <condition>).
            data = {**data, "applies_if": None}
        variables = {**material, "criterion": data, "levels": data["levels"], "low": low, "high": high,
                     "answer": answer}
        if answer == "digit":
            digits = tuple(str(level) for level in range(low, high + 1))
            return self._call("scale", variables, repeat, "digit", low=low, high=high, choices=digits)
        schema = parse.level_schema(low, high, allow_not_applicable=na)
        return self._call("scale", variables, repeat, "level", schema=schema, low=low, high=high, allow_na=na)

    def _per_response(self, criteria: Sequence[Criterion], material: dict[str, Any], repeat: int) -> Task:
        scales = tuple((c.id, (min(c.scale), max(c.scale)) if c.scale else None) for c in criteria)
        conditional = [c.id for c in criteria if c.applies_if is not None]
        schema = parse.per_response_schema(dict(scales), conditional=conditional)
        variables = {**material, "criteria": [criterion_data(c) for c in criteria]}
        call = self._call("per_response", variables, repeat, "per_response", schema=schema, scales=scales)
        return Task("per_response", tuple(criteria), call=call)

    def _holistic(self, criteria: Sequence[Criterion], material: dict[str, Any], repeat: int) -> Task:
        variables = {**material, "qualities": [criterion_data(c) for c in criteria if c.weight >= 0],
                     "flaws": [criterion_data(c) for c in criteria if c.weight < 0]}
        call = self._call("holistic", variables, repeat, "rating", schema=parse.rating_schema(), low=1, high=10)
        return Task("holistic", tuple(criteria), call=call)

    # ------------------------------------------------------------------ pairs

    def pair_criterion_call(self, criterion: Criterion, pair: Any, swapped: bool, repeat: int) -> Call:
        """The A-vs-B request for one criterion; ``swapped`` shows response B first."""
        first, second = (pair.response_b, pair.response_a) if swapped else (pair.response_a, pair.response_b)
        variables = {**pair_material_data(pair.prompt, first, second, pair.reference),
                     "criterion": criterion_data(criterion)}
        if self.pair_one_token:
            return self._call("pairwise_choice_criterion", variables, repeat, "ab", choices=AB)
        return self._call("pairwise_criterion", variables, repeat, "winner", schema=_WINNER_SCHEMA)

    def pair_direct_call(self, pair: Any, swapped: bool, repeat: int) -> Call:
        """The direct (no rubric) A-vs-B request; ``swapped`` shows response B first."""
        first, second = (pair.response_b, pair.response_a) if swapped else (pair.response_a, pair.response_b)
        variables = pair_material_data(pair.prompt, first, second, pair.reference)
        if self.pair_one_token:
            return self._call("pairwise_choice", variables, repeat, "ab", choices=AB)
        return self._call("pairwise_direct", variables, repeat, "winner", schema=_WINNER_SCHEMA)


# --------------------------------------------------------------------------- which rubric judges which item


def _no_rubric(item: Any, specific: dict[str, Rubric]) -> str:
    known = ", ".join(repr(p) for p in list(specific)[:5]) + (", …" if len(specific) > 5 else "")
    if item.prompt_id is None:
        return (f"item {item.id!r}: has no prompt_id, and every rubric given is prompt-specific; add a prompt_id "
                "column to the data or give a general rubric (one without prompt_id)")
    return (f"item {item.id!r}: no rubric for prompt_id {item.prompt_id!r} (the rubrics given cover {len(specific)} "
            f"prompt_id(s): {known}); add one, or score these items with a general rubric")


_VERDICT_SCHEMA = parse.verdict_schema()
_WINNER_SCHEMA = parse.winner_schema()
"""One object per kind shared by every call (backends convert a schema object once; treat them as read-only)."""


class Assigned:
    """The (item, rubric) pairs of a lazily read input, made as they are iterated (see :func:`assign_rubrics`)."""

    def __init__(self, items: Iterable[Any], pick: Callable[[Any], list[Any]], count: int | None):
        self._items = items
        self._pick = pick
        self._count = count

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for item in self._items:
            for rubric in self._pick(item):
                yield item, rubric

    def __len__(self) -> int:
        return self._count or 0

    @property
    def known_length(self) -> bool:
        """Whether :func:`len` is the number of pairs (a one-shot iterator's is not known in advance)."""
        return self._count is not None


def _picker(rubrics: Any, optional: bool) -> tuple[Callable[[Any], list[Any]], dict[str, Any], int]:
    """The function giving an item its rubrics, the prompt-specific rubrics, and the number of rubrics every item
    gets for sure (0: some item may be left without one, so the items must be checked)."""
    if rubrics is None:
        if not optional:
            raise RubricError("no rubric given; pass a Rubric, a RubricSet or a list of rubrics")
        return (lambda item: [None]), {}, 1
    if isinstance(rubrics, Rubric):
        return (lambda item: [rubrics]), {}, 1
    if isinstance(rubrics, RubricSet):
        general: list[Rubric] = []
        specific = {r.prompt_id: r for r in rubrics if r.prompt_id}
    else:
        listed = list(rubrics)
        if not listed:
            raise RubricError("the list of rubrics is empty")
        if len(listed) == 1:
            return (lambda item: [listed[0]]), {}, 1
        general = [r for r in listed if not r.prompt_id]
        specific = {}
        for rubric in listed:
            if rubric.prompt_id and specific.setdefault(rubric.prompt_id, rubric) is not rubric:
                raise RubricError(f"rubrics {specific[rubric.prompt_id].id!r} and {rubric.id!r} both have prompt_id "
                                  f"{rubric.prompt_id!r}; keep one rubric per prompt_id")

    def pick(item: Any) -> list[Any]:
        chosen = list(general)
        # An item without a prompt_id has the id the generators give its prompt (a stable hash of the prompt), so
        # a rubric set generated from a data file judges that file's items.
        prompt_id = item.prompt_id if item.prompt_id is not None else stable_id(item.prompt) if specific else None
        if prompt_id is not None and prompt_id in specific:
            chosen.append(specific[prompt_id])
        return chosen

    return pick, specific, 0 if specific or not general else len(general)


def assign_rubrics(rubrics: Any, items: Iterable[Any], *, optional: bool = False) -> Sequence[tuple[Any, Any]]:
    """Each item with each rubric that judges it, checked before any call.

    A single :class:`Rubric` judges every item. A :class:`RubricSet` gives each item the rubric of its
    ``prompt_id``. A list: one rubric judges every item; several: the general ones (no ``prompt_id``) judge every
    item and a prompt-specific one the items of its ``prompt_id``. An item without a ``prompt_id`` goes by the stable
    hash of its prompt (:func:`~rubrickit.data.items.stable_id`), the id generated rubrics give such a prompt.
    ``None`` (only with ``optional``, for direct pairwise comparison) pairs every item with no rubric. An item left
    without a rubric is a :class:`RubricError` naming it (up to five are listed).

    A list of items gives a list of pairs. Any other iterable (a file read as it is judged,
    :class:`~rubrickit.data.items.ItemStream`, or a generator) gives an :class:`Assigned` that makes the pairs as
    it is iterated, so a long input is never held whole: when items could be left without a rubric, a re-iterable
    input is checked in a first pass (a one-shot iterator is read into a list for the check).
    """
    pick, specific, every = _picker(rubrics, optional)
    if not isinstance(items, (list, tuple)):
        one_shot = iter(items) is items
        if every:
            return Assigned(items, pick, None if one_shot else len(items) * every)  # type: ignore[arg-type]
        if not one_shot:
            count = _check_assigned(items, pick, specific)
            return Assigned(items, pick, count)
        items = list(items)
    assigned: list[tuple[Any, Any]] = []
    _check_assigned(items, pick, specific, assigned)
    return assigned


def _check_assigned(items: Iterable[Any], pick: Callable[[Any], list[Any]], specific: dict[str, Any],
                    out: list[tuple[Any, Any]] | None = None) -> int:
    """Count the pairs (appending them to ``out``), raising :class:`RubricError` for items left without a rubric."""
    problems = []
    count = 0
    for item in items:
        chosen = pick(item)
        if not chosen:
            problems.append(_no_rubric(item, specific))
        count += len(chosen)
        if out is not None:
            out.extend((item, rubric) for rubric in chosen)
    if problems:
        more = [f"… and {len(problems) - 5} more item(s) without a rubric"] if len(problems) > 5 else []
        raise RubricError(problems[:5] + more)
    return count


# --------------------------------------------------------------------------- plans (--dry-run)


def build_plan(calls: Sequence[Call], *, spec: str, mode: str, cache: Any = None, identity: str | None = None,
               **counts: int) -> Any:
    """The :class:`~rubrickit.judge.accounting.Plan` of sending ``calls`` to the judge ``spec``: identical requests
    and answers already in ``cache`` are counted apart; tokens and cost are estimated for the rest. ``counts`` fills
    in items, criteria, tasks and programmatic. ``identity`` is the judge's cache identity (default: ``spec``)."""
    from .accounting import Plan, estimate_cost, estimate_tokens
    from .cache import JudgeCache

    seen: set[str] = set()
    duplicates = cached = 0
    todo: list[Call] = []
    for call in calls:
        key = JudgeCache.key(identity or spec, call.request, salt=call.salt)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        if cache is not None and cache.get(key) is not None:
            cached += 1
            continue
        todo.append(call)
    tokens_in = sum(estimate_tokens(call.request.prompt_text()) for call in todo)
    tokens_out = sum(call.output_estimate() for call in todo)
    return Plan(duplicates=duplicates, cached=cached, calls=len(todo), input_tokens=tokens_in,
                output_tokens=tokens_out, cost=estimate_cost(spec, tokens_in, tokens_out), mode=mode, judge=spec,
                **counts)
