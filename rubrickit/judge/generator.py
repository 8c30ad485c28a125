"""Calling a model for a JSON reply, re-asked with the reason when it is malformed: what generation and refinement
share (:class:`Generator`, with :class:`Stats` counting what happened and :class:`GenerationFailed` when the re-asks
run out). It sits in the judge layer so that ``refine`` and ``generate`` both build on it without importing each
other's modules.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from rubrickit.backends.base import CompletionRequest, Message
from rubrickit.errors import RubrickitError
from rubrickit.judge.modes import failure_of, judge_unusable
from rubrickit.judge.parse import json_objects
from rubrickit.judge.prompts import PromptLibrary, RenderedPrompt
from rubrickit.judge.reply_schemas import fit_schema

__all__ = ["GenerationFailed", "Generator", "Stats", "blank_placeholders", "contract_placeholders", "criterion_slug"]

T = TypeVar("T")


class GenerationFailed(RubrickitError):
    """The generator's output could not be used after the allowed re-asks (the reason is the message)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Stats:
    """Counters and reasons a method records (``tries``, ``rounds``, ``kept``, ``rejected``: reason → count)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Count ``amount`` more of ``name``."""
        self.counts[name] += amount

    def reject(self, reason: str) -> None:
        """Count one rejection (or skip) for ``reason``."""
        self.reasons[reason] += 1

    def merge(self, other: Stats) -> None:
        """Add another :class:`Stats` (a per-prompt one into the run's)."""
        self.counts.update(other.counts)
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        """Plain counters for provenance: ``{name: count, ..., "rejected": {reason: count}}``."""
        out: dict[str, Any] = dict(sorted(self.counts.items()))
        if self.reasons:
            out["rejected"] = dict(sorted(self.reasons.items()))
        return out


class Generator:
    """Sends a rendered prompt template to the generator model and reads one JSON object back.

    Calls go through :meth:`Judge.send` (cache, dedup, rate limits, retries). ``salt`` distinguishes samples that
    must differ (rejection sampling: ``salt=f"try{n}"``); the same salt gives the cached answer again, so a re-run
    of a method is free. ``schema`` (a reply's JSON Schema) goes on the request, re-asks included, only when
    :attr:`structured_output` is on, its bounds fitted to the call's ``max_tokens``
    (:func:`~rubrickit.judge.reply_schemas.fit_schema`); it is then part of the cache key.
    """

    def __init__(self, judge: Any, library: PromptLibrary, *, temperature: float = 0.7, max_tokens: int = 1024,
                 reasks: int = 1):
        self.judge = judge
        self.library = library
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.reasks = reasks

    @property
    def spec(self) -> str:
        """The generator model's spec."""
        return self.judge.spec

    @property
    def structured_output(self) -> bool:
        """Whether the generator's backend honours a request's ``json_schema`` (its ``capabilities.json_schema``)."""
        return bool(self.judge.backend.capabilities.json_schema)

    def render(self, template: str, variables: Mapping[str, Any]) -> RenderedPrompt:
        """Render ``prompts/<template>.j2``."""
        return self.library.render(template, variables)

    async def atext(self, template: str, variables: Mapping[str, Any], *, salt: str = "",
                    temperature: float | None = None, max_tokens: int | None = None,
                    schema: Mapping[str, Any] | None = None) -> str:
        """The generator's raw reply text (raises :class:`GenerationFailed` when the backend fails)."""
        rendered = self.render(template, variables)
        return await self._send(rendered.messages, salt, temperature, max_tokens, schema)

    async def _send(self, messages: Sequence[Message], salt: str, temperature: float | None,
                    max_tokens: int | None, schema: Mapping[str, Any] | None = None) -> str:
        temp = self.temperature if temperature is None else temperature
        seed = int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16) if salt else None
        budget = max_tokens or self.max_tokens
        json_schema = fit_schema(dict(schema), budget) if schema is not None and self.structured_output else None
        request = CompletionRequest(messages=tuple(messages), max_tokens=budget,
                                    temperature=temp, seed=seed, json_schema=json_schema)
        try:
            completion, _ = await self.judge.send(request, salt=salt)
        except Exception as error:  # backend failures after the retries, including backend-specific ones
            if judge_unusable(error):  # authentication, unknown model, outage: every prompt would fail; stop
                failure_of(error, self.judge.retry_policy)  # raises JudgeUnavailableError
            raise GenerationFailed(f"backend error: {type(error).__name__}") from error
        return completion.text

    async def aread(self, template: str, variables: Mapping[str, Any], read: Callable[[str], T], *,
                    salt: str = "", temperature: float | None = None, max_tokens: int | None = None,
                    schema: Mapping[str, Any] | None = None) -> T:
        """Render, send, and ``read`` the reply text; re-ask with the reason ``read`` gives, then give up.

        ``read`` raises ``ValueError`` (or a pydantic ``ValidationError``, ``TypeError``, ``KeyError``) with a short
        reason when the reply is unusable; the generator is re-asked with that reason up to ``reasks`` times (each
        re-ask has its own salt, so it is cached apart), then :class:`GenerationFailed` is raised with the last
        reason. Methods whose models answer in several shapes (a bare JSON list, a tagged plain list) give their
        own ``read``; :meth:`ajson` reads the last JSON object. The reply contract's placeholders that a small
        model copies back (``"<one general sentence>"``) are blanked first (:func:`blank_placeholders`), so the
        readers drop them as they drop blank items.
        """
        rendered = self.render(template, variables)
        messages: tuple[Message, ...] = rendered.messages
        placeholders = contract_placeholders(rendered.contract)
        reason = "no reply"
        for attempt in range(self.reasks + 1):
            text = await self._send(messages, f"{salt}#r{attempt}" if attempt else salt, temperature, max_tokens,
                                    schema)
            try:
                return read(blank_placeholders(text, placeholders))
            except ValidationError as error:
                first = error.errors(include_url=False)[0]
                reason = f"invalid field {'.'.join(map(str, first['loc'])) or 'object'}: {first['msg']}"
            except (ValueError, TypeError, KeyError) as error:
                reason = str(error) or type(error).__name__
            messages = self.library.reask(rendered.messages, text, reason, rendered.contract)
        raise GenerationFailed(reason)

    async def ajson(self, template: str, variables: Mapping[str, Any], parse: Callable[[dict[str, Any]], T], *,
                    salt: str = "", temperature: float | None = None, max_tokens: int | None = None,
                    schema: Mapping[str, Any] | None = None) -> T:
        """:meth:`aread` with ``parse`` applied to the last JSON object of the reply (re-asked when there is none)."""

        def read(text: str) -> T:
            objects = json_objects(text)
            if not objects:
                raise ValueError("no JSON object in the reply")
            return parse(objects[-1])

        return await self.aread(template, variables, read, salt=salt, temperature=temperature,
                                max_tokens=max_tokens, schema=schema)


_CONTRACT_PLACEHOLDER = re.compile(r'"(<[^"<>\\\n]{1,120}>|\.\.\.|\u2026)"')


def contract_placeholders(contract: str) -> tuple[str, ...]:
    """The placeholders of a reply contract: its quoted ``"<...>"`` strings and ``"..."`` (longest first)."""
    found = {match.group(1) for match in _CONTRACT_PLACEHOLDER.finditer(contract)}
    return tuple(sorted(found, key=len, reverse=True))


def blank_placeholders(text: str, placeholders: Sequence[str]) -> str:
    """``text`` with every copy of a contract placeholder removed: a JSON string that was only the placeholder
    becomes ``""`` (a blank item, which the readers drop), one that began with it keeps the rest. A placeholder
    holds no quote or backslash, so the JSON stays well formed."""
    for placeholder in placeholders:
        if placeholder.startswith("<"):
            text = text.replace(placeholder, "")
        else:  # "..." only as a whole JSON string: an ellipsis inside a statement is the model's own text
            text = text.replace(f'"{placeholder}"', '""')
    return text


_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


def criterion_slug(text: str, taken: set[str], *, prefix: str = "") -> str:
    """A readable unique criterion id from its text (``"Cites a source"`` → ``cites-a-source``), added to ``taken``."""
    words = _SLUG_CHARS.sub("-", text.lower()).strip("-").split("-")
    base = (prefix + "-".join(w for w in words[:6] if w))[:48].strip("-") or "criterion"
    if not base[0].isalpha():
        base = "c-" + base
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug
