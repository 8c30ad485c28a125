"""Rendering the judge's prompts: Jinja2 templates in ``prompts/`` → chat messages.

Every prompt the toolkit sends is a template file. A template defines Jinja **blocks** named after the chat roles,
``system`` and ``user``, rendered separately into one message each (in that order); and a ``contract`` block, the
reply format, which the prompt itself includes and the re-ask template quotes. Splitting by block (not by marker
lines in the output) means no text inside a variable can ever start a new message.

Untrusted text — the user prompt or conversation, the judged response(s), reference answers, and criterion text
too — is passed as *data*: it is inserted by ``{{ variable }}`` and never rendered as a template (``{{ 7*7 }}`` in a
response stays literal), and :func:`neutralize` first defuses any delimiter tag inside it (``</response>`` becomes
``&lt;/response>``), so a response cannot close its block and pose as instructions — not even with invisible
characters or look-alike letters inside the tag.

Templates are found, in order, in the user's ``templates_dir`` (same file names), then in the package
(``rubrickit/prompts``, which ships the top-level ``prompts/`` folder), then in ``prompts/`` beside the package in a
source checkout. Rendering uses a sandboxed environment with ``StrictUndefined``: a missing variable is an error,
never an empty string.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from ..backends.base import Message
from ..errors import RubrickitError

__all__ = [
    "DELIMITER_TAGS",
    "PromptLibrary",
    "RenderedPrompt",
    "TEMPLATE_NAMES",
    "conversation_data",
    "criterion_data",
    "material_data",
    "neutralize",
    "package_templates_dir",
    "pair_material_data",
]

TEMPLATE_NAMES = (
    "per_criterion",
    "per_response",
    "logprob",
    "condition",
    "scale",
    "holistic",
    "pairwise_criterion",
    "pairwise_direct",
    "pairwise_choice",
    "pairwise_choice_criterion",
    "reask",
)
"""The prompts the engine sends; each is ``prompts/<name>.j2``."""

DELIMITER_TAGS = (
    "conversation",
    "turn",
    "reference",
    "response",
    "response_a",
    "response_b",
    "criterion",
    "criteria",
    "condition",
    "levels",
    "rubric",
)
"""Tags the templates use as delimiters around data; any of them inside untrusted text is defused."""

# Characters that render as nothing (zero-width spaces and joiners, soft hyphen, bidi controls, variation selectors,
# tag characters, fillers): inserted into a delimiter they hide it from a plain match, not from the judge's eyes.
_INVISIBLE = ("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
              "\u3164\ufe00-\ufe0f\ufeff\uffa0\U0001d173-\U0001d17a\U000e0000-\U000e007f\U000e0100-\U000e01ef")
# Look-alikes of the delimiter's characters: brackets and slashes, and letters from Cyrillic, Greek, Armenian and
# Latin extensions (mathematical, full-width, circled and roman-numeral forms are added from their NFKC forms).
_LOOKALIKE_LT = "<\uff1c\ufe64\u2039\u3008\u2329\u27e8\u02c2\u1438\u276e\u29fc"
_LOOKALIKE_SLASH = "/\uff0f\u2215\u2044\u29f8\u2571"
_LOOKALIKE_LETTERS = {
    "a": "\u0430\u0251\u03b1", "b": "\u0185\u044c", "c": "\u0441\u03f2\u1d04", "d": "\u0501",
    "e": "\u0435\u04bd\u212f", "i": "\u0456\u0131\u0269\u03b9\u04cf", "l": "\u04cf\u2113\u01c0I",
    "n": "\u0578", "o": "\u043e\u03bf\u0585\u1d0f", "p": "\u0440\u03c1\u2374", "r": "\u0433\u1d26",
    "s": "\u0455\ua731", "t": "\u0442", "u": "\u03c5\u057d\u1d1c", "v": "\u03bd\u0475\u1d20", "_": "\uff3f",
}
_NFKC_LETTER_BLOCKS = ((0xFF21, 0xFF5B), (0x1D400, 0x1D6A4), (0x24B6, 0x24EA), (0x2170, 0x2180), (0x1F130, 0x1F14A))


def _letter_classes() -> dict[str, str]:
    """Per ASCII letter (and ``_``), a regex class of it and its look-alikes."""
    chars: dict[str, set[str]] = {letter: {letter, *more} for letter, more in _LOOKALIKE_LETTERS.items()}
    for low, high in _NFKC_LETTER_BLOCKS:
        for code in range(low, high):
            folded = unicodedata.normalize("NFKC", chr(code)).lower()
            if len(folded) == 1 and folded.isascii():
                chars.setdefault(folded, {folded}).add(chr(code))
    return {letter: "[" + "".join(re.escape(c) for c in sorted(group)) + "]" for letter, group in chars.items()}


_LETTER_CLASSES = _letter_classes()


def _letter_class(letter: str) -> str:
    return _LETTER_CLASSES.get(letter, re.escape(letter))


def _tag_pattern(tag: str) -> str:
    return f"[{_INVISIBLE}]*".join(_letter_class(letter) for letter in tag)


@functools.cache
def _tag_re() -> re.Pattern[str]:
    """The delimiter-tag pattern (compiled on first use: its look-alike classes take ~50 ms to compile)."""
    return re.compile(
        f"[{_LOOKALIKE_LT}]([\\s{_INVISIBLE}]*(?:[{_LOOKALIKE_SLASH}][\\s{_INVISIBLE}]*)?(?:"
        + "|".join(_tag_pattern(tag) for tag in sorted(DELIMITER_TAGS, key=len, reverse=True)) + r")\b)",
        re.IGNORECASE,
    )


_ROLE_RE = re.compile(r"[^A-Za-z0-9_-]")


def neutralize(text: str) -> str:
    """Defuse delimiter tags inside untrusted text: ``</response>`` → ``&lt;/response>``, so the text cannot close
    its block or open another. Any case and spacing count, and so do invisible characters anywhere in the tag (a
    zero-width space after the ``<``, a joiner or soft hyphen inside the name, bidi controls, variation selectors,
    tag characters) and look-alikes (a Cyrillic ``е``, full-width letters, ``＜``, ``‹``, ``∕``):
    only the opening bracket is replaced, everything else — including the invisible characters, which emoji and
    some scripts need — is kept as is. Delimiters stay fixed words rather than per-render random ones: prompts must
    be byte-identical across runs for the judge cache and for the prefix caching of criterion calls."""
    return _tag_re().sub(lambda match: "&lt;" + match.group(1), text)


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered template: the messages to send and the reply contract (for a re-ask)."""

    name: str
    """The template's name (``per_criterion``, …)."""
    messages: tuple[Message, ...]
    """The messages, system first."""
    contract: str
    """The template's ``contract`` block: the reply format, quoted by the re-ask template."""


def package_templates_dir() -> Any:
    """The shipped templates: ``rubrickit/prompts`` inside the package, else ``prompts/`` of a source checkout.

    Returns an :mod:`importlib.resources` traversable (a :class:`~pathlib.Path` in the checkout fallback).
    """
    try:
        shipped = importlib.resources.files("rubrickit") / "prompts"
        if shipped.is_dir() and (shipped / "per_criterion.j2").is_file():
            return shipped
    except (ModuleNotFoundError, OSError):  # pragma: no cover - unusual installs
        pass
    return Path(__file__).resolve().parents[2] / "prompts"


def _package_loader() -> jinja2.BaseLoader:
    root = package_templates_dir()

    def load(name: str) -> str | None:
        if "/" in name or "\\" in name or name.startswith("."):
            return None
        entry = root / name
        return entry.read_text(encoding="utf-8") if entry.is_file() else None

    return jinja2.FunctionLoader(load)


class PromptLibrary:
    """The prompt templates, rendered with a sandboxed Jinja2 environment (strict undefined variables).

    ``templates_dir`` overrides templates by file name (``per_criterion.j2`` there wins); the shipped templates fill
    in the rest, including the ``_material.j2`` partials the templates include.
    """

    def __init__(self, templates_dir: str | Path | None = None):
        self.templates_dir = Path(templates_dir) if templates_dir is not None else None
        """The user's override folder, if any."""
        if self.templates_dir is not None and not self.templates_dir.is_dir():
            raise RubrickitError(f"{self.templates_dir}: templates_dir is not a folder; give the folder that holds "
                                 f"your <name>.j2 overrides (names: {', '.join(TEMPLATE_NAMES)})")
        loaders: list[jinja2.BaseLoader] = []
        if self.templates_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(self.templates_dir)))
        loaders.append(_package_loader())
        self.environment = SandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._templates: dict[str, jinja2.Template] = {}
        self._constant: dict[tuple[str, str], str | None] = {}
        """Blocks that use no variable, rendered once: (template, block) → text (a system prompt, a contract)."""
        self._constant_blocks: dict[str, frozenset[str]] = {}

    def template(self, name: str) -> jinja2.Template:
        """The compiled template ``<name>.j2`` (cached)."""
        if name not in self._templates:
            try:
                self._templates[name] = self.environment.get_template(f"{name}.j2")
            except jinja2.TemplateNotFound:
                where = f"{self.templates_dir} or " if self.templates_dir else ""
                raise RubrickitError(f"prompt template {name}.j2 not found in {where}the shipped prompts "
                                     f"({package_templates_dir()})") from None
            except jinja2.TemplateSyntaxError as error:
                raise RubrickitError(f"{error.filename or name}:{error.lineno}: template syntax error: "
                                     f"{error.message}") from None
        return self._templates[name]

    def source(self, name: str) -> str:
        """The template's source text."""
        source, _, _ = self.environment.loader.get_source(self.environment, f"{name}.j2")  # type: ignore[union-attr]
        return source

    def _constants(self, name: str) -> frozenset[str]:
        """The blocks of template ``name`` whose text depends on no variable (see :func:`constant_blocks`)."""
        found = self._constant_blocks.get(name)
        if found is None:
            try:
                found = constant_blocks(self.environment.parse(self.source(name)))
            except jinja2.TemplateError:
                found = frozenset()
            self._constant_blocks[name] = found
        return found

    def _block(self, template: jinja2.Template, block: str, variables: Mapping[str, Any]) -> str | None:
        name = template.name or ""
        if block in self._constants(name.removesuffix(".j2")):
            key = (name, block)
            if key not in self._constant:
                self._constant[key] = self._render_block(template, block, variables)
            return self._constant[key]
        return self._render_block(template, block, variables)

    def _render_block(self, template: jinja2.Template, block: str, variables: Mapping[str, Any]) -> str | None:
        render = template.blocks.get(block)
        if render is None:
            return None
        try:
            text = "".join(render(template.new_context(dict(variables))))
        except SecurityError as error:
            raise RubrickitError(f"prompt template {template.name}: {error.message} (templates are sandboxed)") \
                from None
        except jinja2.UndefinedError as error:
            raise RubrickitError(f"prompt template {template.name}: {error.message}; the engine passes: "
                                 f"{', '.join(sorted(variables))}") from None
        return text.strip("\n")

    def render(self, name: str, variables: Mapping[str, Any]) -> RenderedPrompt:
        """Render template ``name`` with ``variables`` (already prepared as data) into messages."""
        template = self.template(name)
        messages = []
        for role in ("system", "user"):
            text = self._block(template, role, variables)
            if text is not None:
                messages.append(Message(role=role, content=text))
        if not messages:
            raise RubrickitError(f"prompt template {name}.j2 defines neither a 'system' nor a 'user' block")
        contract = self._block(template, "contract", variables) or ""
        return RenderedPrompt(name=name, messages=tuple(messages), contract=contract.strip())

    def reask(self, original: Sequence[Message], reply: str, reason: str, contract: str) -> tuple[Message, ...]:
        """The messages of a re-ask: the original ones, the unreadable reply, then the ``reask`` template's turn."""
        rendered = self.render("reask", {"reason": neutralize(reason), "contract": contract})
        return (*original, Message(role="assistant", content=reply), *rendered.messages)


def constant_blocks(ast: jinja2.nodes.Template) -> frozenset[str]:
    """The names of the blocks of a parsed template that read no variable: no name but ``self``, no include, import
    or extends, and ``self.<block>()`` calls only of blocks that are constant too. Their text is the same for every
    call, so :class:`PromptLibrary` renders them once (the system prompt and the reply contract of most templates:
    a third to two thirds of the rendering work per judge call)."""
    from jinja2 import nodes

    blocks = {block.name: block for block in ast.find_all(nodes.Block)}
    if ast.find(nodes.Extends) is not None:
        return frozenset()
    calls: dict[str, set[str]] = {}
    plain: set[str] = set()
    for name, block in blocks.items():
        if any(block.find(kind) is not None for kind in (nodes.Include, nodes.Import, nodes.FromImport)):
            continue
        names = {n.name for n in block.find_all(nodes.Name) if n.ctx == "load"}
        if names - {"self"}:
            continue
        calls[name] = {getattr(c.node, "attr", "") for c in block.find_all(nodes.Call)
                       if isinstance(c.node, nodes.Getattr) and isinstance(c.node.node, nodes.Name)
                       and c.node.node.name == "self"}
        plain.add(name)
    constant = set(plain)
    changed = True
    while changed:  # a block calling a non-constant block is not constant
        changed = False
        for name in list(constant):
            if not calls.get(name, set()) <= constant:
                constant.discard(name)
                changed = True
    return frozenset(constant)


# --------------------------------------------------------------------------- data variables


def conversation_data(prompt: str | Sequence[Any]) -> list[dict[str, str]]:
    """The conversation as template data: a list of ``{role, content}``, neutralised (a string is one user turn).

    Messages may be mappings or objects with ``role`` and ``content`` (e.g. :class:`~rubrickit.data.items.ChatMessage`).
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": neutralize(prompt)}]
    turns = []
    for message in prompt:
        fields = message if isinstance(message, Mapping) else {"role": getattr(message, "role", "user"),
                                                               "content": getattr(message, "content", "")}
        role = _ROLE_RE.sub("", str(fields.get("role", "user"))) or "user"
        turns.append({"role": role, "content": neutralize(str(fields.get("content", "")))})
    return turns


def criterion_data(criterion: Any) -> dict[str, Any]:
    """A criterion as template data: id, text, condition and levels (never its weight), neutralised."""
    levels = None
    low = high = None
    if criterion.scale:
        levels = [{"level": level, "description": neutralize(text)} for level, text in sorted(criterion.scale.items())]
        low, high = min(criterion.scale), max(criterion.scale)
    return {
        "id": criterion.id,
        "text": neutralize(criterion.text),
        "applies_if": neutralize(criterion.applies_if) if criterion.applies_if is not None else None,
        "levels": levels,
        "low": low,
        "high": high,
    }


def material_data(
    prompt: str | Sequence[Mapping[str, Any]], response: str, reference: str | None
) -> dict[str, Any]:
    """The judged material of one response as template data."""
    return {
        "conversation": conversation_data(prompt),
        "response": neutralize(response),
        "reference": neutralize(reference) if reference is not None else None,
    }


def pair_material_data(
    prompt: str | Sequence[Mapping[str, Any]], first: str, second: str, reference: str | None
) -> dict[str, Any]:
    """The judged material of a pair, in the order shown (``first`` is A), as template data."""
    return {
        "conversation": conversation_data(prompt),
        "response_a": neutralize(first),
        "response_b": neutralize(second),
        "reference": neutralize(reference) if reference is not None else None,
    }
