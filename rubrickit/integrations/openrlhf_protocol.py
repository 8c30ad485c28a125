"""OpenRLHF's reward protocol: from its request (``query``, ``prompts``, ``labels``) to samples for
:class:`~rubrickit.rewards.RewardScorer`, and from the scored samples back to its answer (docs/rl.md). Both ways of
serving OpenRLHF speak it through this module: the ``reward_func`` file (:mod:`rubrickit.integrations.openrlhf`) and
the reward server behind ``--remote_rm_url`` (:mod:`rubrickit.integrations.server`).

What OpenRLHF sends (checked against OpenRLHF/OpenRLHF ``openrlhf/utils/agent.py``, 2026):

- ``query``: the prompt's tokens followed by the generated tokens, decoded with ``skip_special_tokens=False``: the
  chat template's special tokens are kept, and the generated end-of-turn token (``<|im_end|>``, ``<|eot_id|>``,
  ``</s>``, …) is at the end. Older releases decoded whole left-padded batches, so a query may also start with pad
  tokens and end with pad tokens.
- ``prompts``: the prompt text as the dataset gave it to the tokenizer (the chat template applied when
  ``--apply_chat_template`` is on).
- ``labels``: the ``--label_key`` column of the sample (``None`` without one), any JSON value.

The rules (each one documented in docs/rl.md, "prompt and response recovery"):

1. **Response.** Leading pad and BOS tokens (:data:`PAD_TOKENS`, :data:`BOS_TOKENS`) are removed from the query
   and the prompt; the prompt must then be a prefix of the query — exactly, or else ignoring whitespace (a
   tokenizer's decode may add or drop spaces: SentencePiece word boundaries, ``clean_up_tokenization_spaces``).
   The response is the rest, with end and pad tokens (:data:`END_TOKENS`) stripped from its end, repeatedly, and
   surrounding whitespace removed. A query that does not start with its prompt is a :class:`QueryError` naming the
   sample (the server answers 400): a reward is never computed from a guessed response.
2. **What the judge sees as the prompt.** The templated prompt is parsed back into messages for the common chat
   templates — ChatML (Qwen, SmolLM, Phi-4 ``<|im_sep|>``), Llama 3, Gemma, Mistral/Llama 2 ``[INST]`` (with
   ``<<SYS>>`` and ``[SYSTEM_PROMPT]``), Phi-3 ``<|user|>`` and DeepSeek ``<｜User｜>``. A single user message
   becomes a plain string (exactly what a data row for ``rubrickit score`` holds); anything else a chat (system,
   earlier turns). The generation header and anything after it (an empty ``<think></think>`` block) are dropped.
   A prompt in no recognised template is shown as it is. ``drop_system`` leaves system messages out (templates
   that inject a default system prompt: Qwen 2.5, Llama 3.1's dates).
3. **Labels.** A label that is a JSON object (or a string holding one, unless ``label_as`` is ``reference`` or
   ``rubric``) supplies ``prompt_id``, ``reference``, ``rubric`` (or HealthBench ``rubrics``) and ``id``; other
   keys are ignored (with a warning, once per key). A list is an inline rubric
   (HealthBench items). A plain string (or number) is, by ``label_as``: ``auto`` (default) — the ``prompt_id``
   when the rubric is a rubric set, else the ``reference``; ``reference``; ``prompt_id``; ``rubric`` (YAML/JSON
   text); or ``ignore``. ``None`` and ``""`` carry nothing.

The answer (:func:`answer`) is OpenRLHF's dict: ``rewards`` (what the advantage is computed from), ``scores`` (the
aggregate before ``scale``/``shift``, in [0, 1] for ``weighted_mean``: OpenRLHF's dynamic filtering reads it),
``extra_logs`` (numbers per sample, the same keys for every sample: OpenRLHF logs their means to wandb).
A sample that could not be scored gets the failure policy's value in both lists (``None`` → JSON ``null``) and
``rubrickit/scored`` 0 in ``extra_logs``. OpenRLHF turns each reward into a tensor and cannot train on ``null``
(torch raises and the run stops): under OpenRLHF choose ``on_error`` ``0`` or another number to keep training
with the count logged, or keep ``none`` to stop at the first sample the judge could not score.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import RubrickitError
from ..rewards.core import RewardDetail, RewardOptions

__all__ = [
    "BOS_TOKENS",
    "END_TOKENS",
    "PAD_TOKENS",
    "LabelAs",
    "QueryError",
    "RecoveryOptions",
    "answer",
    "build_samples",
    "judge_prompt",
    "label_fields",
    "parse_chat",
    "split_query",
    "unscored_reason",
]

log = logging.getLogger("rubrickit.serve")

END_TOKENS: tuple[str, ...] = (
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<|finetune_right_pad_id|>",
    "</s>", "<eos>", "<end_of_turn>", "<|end|>", "<|endofturn|>", "<｜end▁of▁sentence｜>", "<|return|>",
    "<pad>", "<|pad|>", "[PAD]", "<unk>",
)
"""Stripped from the end of a response, repeatedly: the end-of-turn/end-of-text tokens of ChatML (Qwen),
Llama 3, Llama 2/Mistral, Gemma, Phi-3, DeepSeek, gpt-oss, and the usual pad tokens."""
PAD_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<pad>", "<|pad|>", "[PAD]", "</s>", "<eos>",
    "<unk>", "<|im_end|>", "<｜end▁of▁sentence｜>", "<|eot_id|>",
)
"""Stripped from the start of a query (left padding of a decoded batch; many tokenizers pad with their EOS)."""
BOS_TOKENS: tuple[str, ...] = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<｜begin▁of▁sentence｜>")
"""Stripped from the start of both the query and the prompt before they are compared (a template or tokenizer may
add its BOS to one and not the other)."""

LabelAs = Literal["auto", "reference", "prompt_id", "rubric", "ignore"]


class QueryError(RubrickitError, ValueError):
    """A sample of a reward request cannot be used (its query does not start with its prompt, a bad label…)."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"sample {index}: {reason}")
        self.index = index
        """The sample's position in the request."""
        self.reason = reason
        """What is wrong, without the position."""


@dataclass(frozen=True)
class RecoveryOptions:
    """How queries, prompts and labels become samples (the module docstring has the rules)."""

    end_tokens: tuple[str, ...] = END_TOKENS
    """Stripped from the end of the response, repeatedly."""
    pad_tokens: tuple[str, ...] = PAD_TOKENS
    """Stripped from the start of the query."""
    bos_tokens: tuple[str, ...] = BOS_TOKENS
    """Stripped from the start of the query and the prompt."""
    label_as: LabelAs = "auto"
    """What a plain-string label is."""
    drop_system: bool = False
    """Leave system messages out of the prompt the judge sees."""
    parse_template: bool = True
    """Parse chat templates back into messages (``False``: the judge sees the templated prompt text)."""

    def __post_init__(self) -> None:
        if self.label_as not in ("auto", "reference", "prompt_id", "rubric", "ignore"):
            raise ValueError(f"label_as must be auto, reference, prompt_id, rubric or ignore, not {self.label_as!r}")
        for name in ("end_tokens", "pad_tokens", "bos_tokens"):
            tokens = tuple(t for t in getattr(self, name) if t)
            # Longest first, so "<|end|>" never shadows a longer token that starts the same way.
            object.__setattr__(self, name, tuple(sorted(dict.fromkeys(tokens), key=len, reverse=True)))


# --------------------------------------------------------------------------- the response


def _strip_leading(text: str, tokens: Sequence[str]) -> str:
    """``text`` without any leading run of ``tokens`` (whitespace between them included)."""
    while True:
        stripped = text.lstrip()
        for token in tokens:
            if stripped.startswith(token):
                text = stripped[len(token):]
                break
        else:
            return text


def _strip_trailing(text: str, tokens: Sequence[str]) -> str:
    while True:
        stripped = text.rstrip()
        for token in tokens:
            if stripped.endswith(token):
                text = stripped[: len(stripped) - len(token)]
                break
        else:
            return stripped


def _loose_prefix_end(query: str, prompt: str) -> int | None:
    """Where ``prompt`` ends in ``query`` when whitespace is ignored on both sides, or ``None``."""
    i = 0
    for char in prompt:
        if char.isspace():
            continue
        while i < len(query) and query[i].isspace():
            i += 1
        if i >= len(query) or query[i] != char:
            return None
        i += 1
    return i


def split_query(query: str, prompt: str, options: RecoveryOptions | None = None, *, index: int = 0) -> str:
    """The response inside ``query`` (prompt + response as OpenRLHF decodes it); :class:`QueryError` when the
    query does not start with ``prompt`` after the documented normalisation."""
    opts = options or RecoveryOptions()
    if not isinstance(query, str):
        raise QueryError(index, f"query must be a string, got {type(query).__name__}")
    if not isinstance(prompt, str):
        raise QueryError(index, f"prompt must be a string, got {type(prompt).__name__}")
    lead = tuple(dict.fromkeys(opts.pad_tokens + opts.bos_tokens))
    body = _strip_leading(query, lead)
    head = _strip_leading(prompt, opts.bos_tokens)
    if not head.strip():
        raise QueryError(index, "the prompt is empty: the response cannot be told apart from it")
    if body.startswith(head):
        rest = body[len(head):]
    else:
        end = _loose_prefix_end(body, head)
        if end is None:
            raise QueryError(index, _mismatch(body, head))
        rest = body[end:]
    return _strip_trailing(rest, opts.end_tokens).strip()


def _mismatch(body: str, head: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(body, head, strict=False)) if a != b), min(len(body), len(head)))
    if len(body) < len(head) and head.startswith(body):
        detail = f"the query ({len(body)} characters) is shorter than its prompt ({len(head)} characters)"
    else:
        detail = (f"they differ at character {at}: query has {body[at:at + 20]!r}, "
                  f"prompt has {head[at:at + 20]!r}")
    tail = head[-200:] if len(head) > 200 else head[len(head) // 2:]
    hint = ""
    if len(tail) >= 16 and tail in body and not body.startswith(head):
        hint = ("; the query holds the end of the prompt but not its start: OpenRLHF cuts prompts longer than "
                "max_len - max_new_tokens from the left (raise OpenRLHF's max_len setting or shorten the prompts)")
    return f"the query does not start with its prompt ({detail}){hint}"


# --------------------------------------------------------------------------- the prompt the judge sees


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "model": "assistant", "tool": "tool",
          "ipython": "tool", "developer": "developer"}


def _role(name: str) -> str | None:
    return _ROLES.get(name.strip().lower())


def _parse_turns(text: str, turn: re.Pattern[str], tail: re.Pattern[str], strip: bool) -> list[dict] | None:
    messages, pos = [], 0
    while True:
        match = turn.match(text, pos)
        if match is None:
            break
        role = _role(match.group(1))
        if role is None:
            return None
        content = match.group(2)
        messages.append(_msg(role, content.strip() if strip else content))
        pos = match.end()
    rest = text[pos:]
    if rest.strip() and not tail.match(rest):
        return None
    return messages


_CHATML_TURN = re.compile(r"\s*<\|im_start\|>([^\n<]*?)(?:\n|<\|im_sep\|>)(.*?)<\|im_end\|>", re.S)
_CHATML_TAIL = re.compile(r"\s*<\|im_start\|>assistant(?:\n|<\|im_sep\|>)", re.S)
_LLAMA3_TURN = re.compile(r"\s*<\|start_header_id\|>([^<]*?)<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S)
_LLAMA3_TAIL = re.compile(r"\s*<\|start_header_id\|>assistant<\|end_header_id\|>", re.S)
_GEMMA_TURN = re.compile(r"\s*<start_of_turn>([^\n<]*)\n(.*?)<end_of_turn>", re.S)
_GEMMA_TAIL = re.compile(r"\s*<start_of_turn>model\n?", re.S)
_PHI3_TURN = re.compile(r"\s*<\|(system|user|assistant)\|>\n?(.*?)<\|end\|>", re.S)
_PHI3_TAIL = re.compile(r"\s*<\|assistant\|>", re.S)
_INST = re.compile(r"\s*(?:<s>)?\s*\[INST\](.*?)\[/INST\]", re.S)
_SYS_BLOCK = re.compile(r"^\s*<<SYS>>\n?(.*?)\n?<</SYS>>\s*", re.S)
_SYSTEM_PROMPT = re.compile(r"\s*\[SYSTEM_PROMPT\](.*?)\[/SYSTEM_PROMPT\]", re.S)


def _parse_inst(text: str) -> list[dict] | None:
    """Mistral and Llama 2: ``<s>[INST] user [/INST] answer</s>[INST] user [/INST]``."""
    messages: list[dict] = []
    pos = 0
    system = _SYSTEM_PROMPT.match(text)
    if system:
        messages.append(_msg("system", system.group(1).strip()))
        pos = system.end()
    while True:
        match = _INST.match(text, pos)
        if match is None:
            return None if not messages or messages[-1]["role"] != "user" else messages
        user = match.group(1)
        block = _SYS_BLOCK.match(user)
        if block:
            messages.append(_msg("system", block.group(1).strip()))
            user = user[block.end():]
        messages.append(_msg("user", user.strip()))
        pos = match.end()
        end = text.find("</s>", pos)
        following = text.find("[INST]", pos)
        if following == -1:
            return messages if not text[pos:].strip() else None
        if end == -1 or end > following:
            return None
        messages.append(_msg("assistant", text[pos:end].strip()))
        pos = end + len("</s>")


_DS_USER, _DS_ASSISTANT, _DS_END = "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"


def _parse_deepseek(text: str) -> list[dict] | None:
    """DeepSeek V3/R1: ``{system}<｜User｜>u<｜Assistant｜>a<｜end▁of▁sentence｜><｜User｜>u<｜Assistant｜>``."""
    system, sep, rest = text.partition(_DS_USER)
    if not sep:
        return None
    messages = [_msg("system", system.strip())] if system.strip() else []
    for chunk in rest.split(_DS_USER):
        user, sep, answer = chunk.partition(_DS_ASSISTANT)
        if not sep:
            return None
        messages.append(_msg("user", user.strip()))
        answer, ended, after = answer.partition(_DS_END)
        if ended:
            if after.strip():
                return None
            messages.append(_msg("assistant", answer.strip()))
        elif answer.strip() not in ("", "<think>"):
            return None
    return messages


def parse_chat(prompt: str, options: RecoveryOptions | None = None) -> list[dict[str, str]] | None:
    """The messages of a templated prompt (``[{"role", "content"}, ...]``), or ``None`` when it is in no template
    recognised here (or not entirely)."""
    opts = options or RecoveryOptions()
    text = _strip_leading(prompt, opts.bos_tokens)
    if "<|im_start|>" in text:
        return _parse_turns(text, _CHATML_TURN, _CHATML_TAIL, strip=False)
    if "<|start_header_id|>" in text:
        return _parse_turns(text, _LLAMA3_TURN, _LLAMA3_TAIL, strip=True)
    if "<start_of_turn>" in text:
        return _parse_turns(text, _GEMMA_TURN, _GEMMA_TAIL, strip=True)
    if "[INST]" in text:
        return _parse_inst(text)
    if _DS_USER in text:
        return _parse_deepseek(text)
    if "<|user|>" in text:
        return _parse_turns(text, _PHI3_TURN, _PHI3_TAIL, strip=True)
    return None


def judge_prompt(prompt: str, options: RecoveryOptions | None = None) -> str | list[dict[str, str]]:
    """What the judge sees as the prompt: the user's text (one user message), a chat (more), or the prompt text."""
    opts = options or RecoveryOptions()
    messages = parse_chat(prompt, opts) if opts.parse_template else None
    if messages is not None and opts.drop_system:
        messages = [m for m in messages if m["role"] != "system"]
    if not messages or not any(m["role"] == "user" for m in messages):
        return prompt
    if len(messages) == 1:
        return messages[0]["content"]
    return messages


# --------------------------------------------------------------------------- labels


_LABEL_KEYS = ("prompt_id", "reference", "rubric", "rubrics", "id")
_warned_keys: set[str] = set()


def label_fields(label: Any, options: RecoveryOptions | None = None, *, rubric_set: bool = False,
                 index: int = 0) -> dict[str, Any]:
    """The sample fields a label supplies (``prompt_id``, ``reference``, ``rubric``, ``id``)."""
    opts = options or RecoveryOptions()
    if label is None or opts.label_as == "ignore":
        return {}
    if isinstance(label, bool):
        raise QueryError(index, f"label must be a string, number, object or list, got {label!r}")
    if isinstance(label, int | float):
        if not math.isfinite(label):
            raise QueryError(index, f"label must be finite, got {label!r}")
        label = str(label)
    if isinstance(label, str):
        text = label.strip()
        if not text:
            return {}
        if text.startswith("{") and opts.label_as not in ("reference", "rubric"):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                return _object_label(parsed, index)
        kind = opts.label_as
        if kind == "auto":
            kind = "prompt_id" if rubric_set else "reference"
        return {kind: label if kind != "prompt_id" else text}
    if isinstance(label, Mapping):
        return _object_label(label, index)
    if isinstance(label, list):
        return {"rubric": label}
    raise QueryError(index, f"label must be a string, number, object or list, got {type(label).__name__}")


def _object_label(label: Mapping[str, Any], index: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("prompt_id", "reference", "id"):
        value = label.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise QueryError(index, f"label.{key} must be a string, got {type(value).__name__}")
        out[key] = str(value)
    rubric = label.get("rubric", label.get("rubrics"))
    if rubric is not None:
        out["rubric"] = rubric
    unknown = sorted(set(label) - set(_LABEL_KEYS) - _warned_keys)
    if unknown:
        _warned_keys.update(unknown)
        log.warning("label keys ignored (only %s are read): %s", ", ".join(_LABEL_KEYS), ", ".join(unknown))
    return out


# --------------------------------------------------------------------------- requests


def build_samples(queries: Any, prompts: Any, labels: Any, options: RecoveryOptions | None = None, *,
                  rubric_set: bool = False) -> list[dict[str, Any]]:
    """One :class:`~rubrickit.rewards.RewardScorer` sample per query; :class:`QueryError` names the first bad one
    (``index`` -1 when the lists themselves are wrong)."""
    opts = options or RecoveryOptions()
    if not isinstance(queries, list | tuple):
        raise QueryError(-1, f"query must be a list of strings, got {type(queries).__name__}")
    if not isinstance(prompts, list | tuple):
        raise QueryError(-1, "prompts must be a list of strings, one per query (the server finds each response "
                             f"after its prompt), got {type(prompts).__name__}")
    if len(prompts) != len(queries):
        raise QueryError(-1, f"{len(queries)} queries but {len(prompts)} prompts")
    if labels is None:
        labels = [None] * len(queries)
    elif not isinstance(labels, list | tuple) or len(labels) != len(queries):
        raise QueryError(-1, f"labels must be null or a list of {len(queries)} (one per query)")
    samples = []
    for index, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
        response = split_query(query, prompt, opts, index=index)
        sample: dict[str, Any] = {"prompt": judge_prompt(prompt, opts), "response": response}
        sample.update(label_fields(label, opts, rubric_set=rubric_set, index=index))
        samples.append(sample)
    return samples


def _fallback(on_error: Any) -> float | None:
    return RewardOptions(on_error=on_error).fallback() if on_error != "raise" else None


def answer(details: Sequence[RewardDetail], on_error: Any = "none") -> dict[str, Any]:
    """OpenRLHF's answer for scored samples: ``rewards``, ``scores``, ``extra_logs`` (lists, one entry per sample).

    ``on_error``: the value of a sample that was not scored (``"none"`` → ``None``, ``"zero"``, a number; with
    ``"raise"`` the caller refuses the request before calling this)."""
    fallback = _fallback(on_error)
    rewards: list[float | None] = []
    scores: list[float | None] = []
    logs: dict[str, list[float]] = {"rubrickit/scored": [], "rubrickit/coverage": [],
                                    "rubrickit/error_verdicts": [], "rubrickit/gated": []}
    for detail in details:
        if detail.scored:
            rewards.append(detail.reward)
            scores.append(detail.raw_reward)
        else:
            rewards.append(fallback)
            scores.append(fallback)
        logs["rubrickit/scored"].append(1.0 if detail.scored else 0.0)
        logs["rubrickit/coverage"].append(float(detail.coverage))
        logs["rubrickit/error_verdicts"].append(float(detail.errors))
        logs["rubrickit/gated"].append(1.0 if detail.scored and detail.gates_failed else 0.0)
    return {"rewards": rewards, "scores": scores, "extra_logs": logs}


def unscored_reason(details: Sequence[RewardDetail]) -> str | None:
    """``sample i: reason`` of the first sample that was not scored, or ``None``."""
    for index, detail in enumerate(details):
        if not detail.scored:
            return f"sample {index} could not be scored: {detail.reason}"
    return None
