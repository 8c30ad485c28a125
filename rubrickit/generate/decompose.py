"""``decompose`` — RRD, Recursive Rubric Decomposition (DESIGN §7).

RRD ("Recursive Rubric Decomposition") builds a prompt-specific rubric whose criteria *discriminate* between good
responses, from a prompt and a pool of responses. Per prompt group:

1. **Response pool.** The group's responses, plus ``samples`` responses from each ``policy`` model
   (``prompts/policy_response.j2`` at temperature :data:`POLICY_TEMPERATURE`, one distinct salt per sample, so the
   samples differ and a re-run replays them from the cache). A pool of fewer than two responses skips the group.
2. **Proposal.** The generator proposes up to :data:`MAX_INITIAL` rubrics (one statement each) from the prompt and a
   few responses (``prompts/decompose_propose.j2``); they enter a FIFO queue at depth 0.
3. **Queue loop.** Pop a rubric and judge it, as a one-criterion rubric, on every response of the pool
   (``ctx.judge.ascore``; ``error`` and ``not_applicable`` verdicts are counted and excluded — never met or unmet).
   Then, in this order:

   - satisfied by no response → rejected ``unsatisfied`` (also ``judge-error`` when nothing could be assessed);
   - satisfied by more than ``n`` responses and depth < ``max_depth`` → **decomposed**: the generator writes at
     most :data:`MAX_CHILDREN` finer rubrics conditioned on (up to :data:`MAX_SPLIT_RESPONSES` of) the satisfying
     responses (``prompts/decompose_split.j2``); the children are queued at depth + 1 and the parent is not
     accepted. When the split fails (unreadable after the re-ask, or only repeats of known rubrics) the rubric is
     treated as a leaf and the failure counted. At ``max_depth`` a broadly satisfied rubric is a leaf too;
   - **misaligned** (only when the group has labelled comparisons): some weaker response satisfies it while the
     stronger response of the same labelled pair fails it → rejected ``misaligned``;
   - **redundant / conflicting**: the candidate is embedded (:func:`rubrickit.backends.embedding.embed_texts`) and
     compared with the accepted rubrics; only those with cosine ≥ :data:`PREFILTER_COSINE` (a cheap prefilter:
     texts below it share too little wording and meaning to overlap 70 %) are sent, most similar first and at most
     :data:`MAX_OVERLAP_CHECKS`, to an LLM check on the judge model (RRD's redundancy check shared with refine,
     :func:`rubrickit.refine.dedup.aoverlap` with ``prompts/overlap.j2``, the accepted rubric first, the candidate
     second and the conversation shown; it returns the overlap percentage and the relation). Relation ``opposite``
     (the two pull in opposite directions) → ``conflict``; overlap / 100 ≥ ``overlap`` → ``redundant``. A check that
     fails is counted and decides nothing (the candidate is not rejected on it);
   - otherwise **accepted**.

   The loop stops when the queue is empty (``stopped_by: queue-empty``) or after ``max_rejections`` rejections
   (``termination-count``). Against runaway decomposition, besides the cap on children and on depth, a group
   creates no more children once it holds :data:`MAX_NODES` rubrics (later broad rubrics are judged as leaves).
   Rubrics still queued at the stop stay ``pending`` in the tree.
4. **Weights.** Whitened uniform (:func:`rubrickit.refine.whiten.whitened_weights`): from the response × accepted
   rubric satisfaction matrix S (1 met, 0 unmet; an excluded cell takes its column's mean over the assessed
   responses, so it adds no covariance of its own — never a guessed 0 or 1), w ∝ (Σ + ridge·I)^{-1/2}·1, negatives
   clipped to 0, normalised. Criteria whose weight clips to 0 are dropped (they would only cost judge calls); the
   rest are written as ``weight = w / mean(w)``, so the average weight is 1 (the weighted-mean reward does not
   depend on the scale).

Replies are read by :mod:`rubrickit.generate.decompose_replies`.

Output: one rubric per group (``scope: prompt``, ``prompt_id`` = the group's id) whose provenance holds the
parameters and the statistics: pool size, judgments, accepted, rejected by reason, decompositions, the maximum depth
reached, ``stopped_by``, and the decomposition ``tree`` (nodes with id, text, parent, depth, status
accepted|rejected|decomposed|pending, reason, satisfied and assessed counts).
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rubrickit.backends.embedding import embed_texts
from rubrickit.data.preferences import PromptGroup

from ..errors import RubrickitError
from ..judge.prompts import conversation_data, neutralize
from ..refine.dedup import aoverlap
from ..refine.whiten import whitened_weights
from ..rubric import Criterion, Rubric
from .common import (
    GenContext,
    GenerationFailed,
    GenerationResult,
    Generator,
    Stats,
    make_criteria,
    make_provenance,
    make_rubric,
)
from .decompose_replies import _ask_rubrics, _same, rubric_texts

__all__ = [
    "MAX_CHILDREN",
    "MAX_INITIAL",
    "MAX_NODES",
    "PREFILTER_COSINE",
    "Node",
    "agenerate",
    "rubric_texts",
]

PREFILTER_COSINE = 0.5
"""Embedding cosine (all-MiniLM-L6-v2) from which a candidate/accepted pair gets the LLM overlap check. Measured on
rubric statements: paraphrases 0.69–0.91, opposites ("polite" / "rude", "concise" / "verbose") 0.64–0.65,
unrelated statements 0.1–0.45; below 0.5 neither a 70 % overlap nor a conflict is plausible."""
MAX_OVERLAP_CHECKS = 3
"""At most this many accepted rubrics (the most similar) are checked against one candidate."""
MAX_INITIAL = 8
"""Rubrics proposed per prompt at most."""
MAX_CHILDREN = 5
"""Finer rubrics per decomposition at most (runaway guard)."""
MAX_NODES = 120
"""Rubrics (nodes of the tree) per prompt at most (runaway guard)."""
MAX_CONTEXT_RESPONSES = 3
"""Responses shown to the proposal prompt."""
MAX_SPLIT_RESPONSES = 4
"""Satisfying responses shown to the decomposition prompt."""
POLICY_TEMPERATURE = 1.0
"""Sampling temperature of policy models."""

# --------------------------------------------------------------------------- the decomposition tree


@dataclass
class Node:
    """One rubric of the decomposition tree."""

    id: str
    text: str
    parent: str | None
    depth: int
    status: str = "pending"
    """``accepted``, ``rejected``, ``decomposed`` or ``pending`` (never reached: the loop stopped first)."""
    reason: str | None = None
    values: list[float | None] = field(default_factory=list)
    """Per pool response: 1.0 met, 0.0 unmet, ``None`` excluded (error or not applicable)."""

    @property
    def satisfied(self) -> int:
        """Responses that satisfy it."""
        return sum(1 for v in self.values if v == 1.0)

    @property
    def assessed(self) -> int:
        """Responses with a met/unmet verdict."""
        return sum(1 for v in self.values if v is not None)

    def as_dict(self) -> dict[str, Any]:
        """The node as written in provenance."""
        judged = bool(self.values)
        return {"id": self.id, "text": self.text, "parent": self.parent, "depth": self.depth, "status": self.status,
                "reason": self.reason, "satisfied": self.satisfied if judged else None,
                "assessed": self.assessed if judged else None}


class _Skip(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Options:
    n: int
    max_depth: int
    max_rejections: int
    overlap: float
    ridge: float
    embedding_model: str | None


class _Policy:
    """A policy model that samples responses for the pool."""

    def __init__(self, spec: Any, ctx: GenContext):
        from ..judge.engine import Judge

        options = getattr(ctx.judge, "options", None)
        cache = {"cache_dir": options.cache_dir, "use_cache": options.use_cache} if options is not None else {}
        self.judge = Judge(spec, **cache)
        self.generator = Generator(self.judge, ctx.library, temperature=POLICY_TEMPERATURE,
                                   max_tokens=ctx.generator.max_tokens, reasks=0)

    async def sample(self, group: PromptGroup, count: int) -> list[str | None]:
        """``count`` responses (``None`` for a failed call), each with its own salt."""
        variables = {"conversation": conversation_data(group.prompt)}

        async def one(index: int) -> str | None:
            try:
                return await self.generator.atext("policy_response", variables,
                                                  salt=f"rrd-policy:{self.generator.spec}:{group.id}:{index}")
            except GenerationFailed:
                return None

        return list(await asyncio.gather(*(one(i) for i in range(count))))


class _GroupRun:
    """RRD on one prompt group."""

    def __init__(self, group: PromptGroup, ctx: GenContext, options: _Options):
        self.group = group
        self.ctx = ctx
        self.options = options
        self.stats = Stats()
        self.pool: list[str] = []
        self.nodes: list[Node] = []
        self.accepted: list[Node] = []
        self.rejections = 0
        self.stopped_by = "queue-empty"
        self._embeddings: dict[str, Any] = {}

    # ------------------------------------------------------------------ steps

    async def build_pool(self, policies: Sequence[_Policy], samples: int) -> None:
        self.pool = list(self.group.responses)  # indices stay those of the group's labelled comparisons
        known = {_same(r) for r in self.pool}
        for policy in policies:
            for text in await policy.sample(self.group, samples):
                if text is None:
                    self.stats.add("policy_failures")
                elif not text.strip() or _same(text) in known:
                    self.stats.add("policy_duplicates")
                else:
                    known.add(_same(text))
                    self.pool.append(text.strip())
                    self.stats.add("policy_samples")
        if len(self.pool) < 2:
            raise _Skip(f"fewer than 2 responses to judge (pool of {len(self.pool)})")

    async def propose(self) -> None:
        variables = {"conversation": conversation_data(self.group.prompt),
                     "responses": [neutralize(r) for r in self.pool[:MAX_CONTEXT_RESPONSES]],
                     "max_rubrics": MAX_INITIAL}
        try:
            texts = await _ask_rubrics(self.ctx.generator, "decompose_propose", variables,
                                       salt=f"rrd-propose:{self.group.id}", limit=MAX_INITIAL)
        except GenerationFailed as error:
            raise _Skip(f"proposal failed: {error.reason}") from None
        for text in texts:
            self._add_node(text, None, 0)

    def _add_node(self, text: str, parent: Node | None, depth: int) -> Node:
        node = Node(id=f"n{len(self.nodes)}", text=text, parent=parent.id if parent else None, depth=depth)
        self.nodes.append(node)
        return node

    async def judge(self, node: Node) -> None:
        criterion = Criterion(id="rrd-candidate", text=node.text)
        rubric = Rubric(id="rrd-candidate", scope="prompt", prompt_id=self.group.id, gates="none",
                        criteria=[criterion])
        records = await asyncio.gather(*(
            self.ctx.judge.ascore(rubric, {"id": f"{self.group.id}/pool-{i}", "prompt": self.group.prompt,
                                           "response": response, "reference": self.group.reference})
            for i, response in enumerate(self.pool)))
        values: list[float | None] = []
        for record in records:
            verdict = record.verdicts[0].verdict if record.verdicts else "error"
            self.stats.add("judged")
            if verdict == "met":
                values.append(1.0)
            elif verdict == "unmet":
                values.append(0.0)
            else:  # an error or not_applicable is excluded: never counted as met or unmet
                self.stats.add("judge_errors" if verdict == "error" else "not_applicable")
                values.append(None)
        node.values = values

    async def split(self, node: Node) -> list[Node]:
        satisfying = [r for r, v in zip(self.pool, node.values, strict=True) if v == 1.0]
        variables = {"conversation": conversation_data(self.group.prompt), "rubric": neutralize(node.text),
                     "responses": [neutralize(r) for r in satisfying[:MAX_SPLIT_RESPONSES]],
                     "max_rubrics": MAX_CHILDREN}
        room = MAX_NODES - len(self.nodes)
        if room <= 0:
            self.stats.add("node_budget_leaves")
            node.reason = f"node budget of {MAX_NODES} reached; judged as a leaf"
            return []
        try:
            texts = await _ask_rubrics(self.ctx.generator, "decompose_split", variables,
                                       salt=f"rrd-split:{self.group.id}:{_same(node.text)}", limit=MAX_CHILDREN)
        except GenerationFailed as error:
            self.stats.add("decomposition_failures")
            node.reason = f"decomposition failed ({error.reason}); judged as a leaf"
            return []
        known = {_same(n.text) for n in self.nodes}
        fresh = [t for t in texts if _same(t) not in known]
        if len(fresh) < len(texts):
            self.stats.add("repeated_children", len(texts) - len(fresh))
        if len(fresh) > room:
            self.stats.add("children_over_budget", len(fresh) - room)
            fresh = fresh[:room]
        if not fresh:
            self.stats.add("decomposition_failures")
            node.reason = "decomposition gave only known rubrics; judged as a leaf"
        return [self._add_node(text, node, node.depth + 1) for text in fresh]

    def misaligned(self, node: Node) -> bool:
        for comparison in self.group.comparisons:
            better, worse = node.values[comparison.better], node.values[comparison.worse]
            if worse == 1.0 and better == 0.0:
                return True
        return False

    def _embed(self, texts: Sequence[str]) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._embeddings]
        if missing:
            for text, vector in zip(missing, embed_texts(missing, self.options.embedding_model), strict=True):
                self._embeddings[text] = np.asarray(vector, dtype=np.float64)
        return np.stack([self._embeddings[t] for t in texts])

    async def redundancy(self, node: Node) -> tuple[str, str] | None:
        """``("redundant"|"conflict", accepted node id)`` or ``None``."""
        if not self.accepted:
            return None
        vectors = self._embed([node.text] + [a.text for a in self.accepted])
        cosines = vectors[1:] @ vectors[0]
        order = sorted((i for i in range(len(self.accepted)) if cosines[i] >= PREFILTER_COSINE),
                       key=lambda i: -cosines[i])[:MAX_OVERLAP_CHECKS]
        checker = Generator(self.ctx.judge, self.ctx.library, temperature=0.0, max_tokens=256,
                            reasks=self.ctx.generator.reasks)
        for index in order:
            other = self.accepted[index]
            self.stats.add("overlap_checks")
            try:
                answer = await aoverlap(checker, other.text, node.text, conversation=self.group.prompt,
                                        salt=f"rrd:{self.group.id}")
            except GenerationFailed:
                self.stats.add("overlap_check_failures")
                continue
            if answer.relation == "opposite":
                return "conflict", other.id
            if answer.overlap / 100 >= self.options.overlap:
                return "redundant", other.id
        return None

    def reject(self, node: Node, reason: str, detail: str | None = None) -> None:
        node.status = "rejected"
        node.reason = "; ".join(filter(None, [detail or reason, node.reason]))
        self.stats.reject(reason)
        self.rejections += 1

    # ------------------------------------------------------------------ the loop

    async def loop(self) -> None:
        queue = deque(self.nodes)
        opts = self.options
        while queue:
            if self.rejections >= opts.max_rejections:
                self.stopped_by = "termination-count"
                return
            node = queue.popleft()
            await self.judge(node)
            if node.assessed == 0:
                self.reject(node, "judge-error", "no response could be judged")
                continue
            if node.satisfied == 0:
                self.reject(node, "unsatisfied")
                continue
            if node.satisfied > opts.n and node.depth < opts.max_depth:
                children = await self.split(node)
                if children:
                    node.status, node.reason = "decomposed", f"satisfied by {node.satisfied} > n={opts.n}"
                    self.stats.add("decompositions")
                    queue.extend(children)
                    continue
            if self.group.comparisons and self.misaligned(node):
                self.reject(node, "misaligned", "a weaker response satisfies it while a stronger one fails")
                continue
            found = await self.redundancy(node)
            if found is not None:
                reason, other = found
                self.reject(node, reason, f"{reason} with {other}")
                continue
            node.status = "accepted"
            self.accepted.append(node)
        if self.rejections >= opts.max_rejections:
            self.stopped_by = "termination-count"

    # ------------------------------------------------------------------ the rubric

    def weights(self) -> list[float]:
        """Whitened-uniform weights of the accepted rubrics (sum to 1; see the module docstring)."""
        import numpy as np

        columns = []
        for node in self.accepted:
            assessed = [v for v in node.values if v is not None]
            mean = sum(assessed) / len(assessed)
            columns.append([mean if v is None else v for v in node.values])
        matrix = np.asarray(columns, dtype=np.float64).T
        return [float(w) for w in whitened_weights(matrix, ridge=self.options.ridge)]

    def stats_dict(self) -> dict[str, Any]:
        out = self.stats.as_dict()
        out.update(pool_size=len(self.pool), accepted=len(self.accepted), stopped_by=self.stopped_by,
                   max_depth_reached=max((n.depth for n in self.nodes if n.values), default=0),
                   nodes=len(self.nodes), tree=[n.as_dict() for n in self.nodes])
        out.setdefault("decompositions", 0)
        out.setdefault("judged", 0)
        out.setdefault("rejected", {})
        return out

    def rubric(self, parameters: Mapping[str, Any], source: str | None) -> Rubric:
        if not self.accepted:
            raise _Skip(f"no rubric accepted ({_reasons(self.stats)})")
        weights = self.weights()
        kept = [(node, w) for node, w in zip(self.accepted, weights, strict=True) if w > 0]
        scale = len(kept) / sum(w for _, w in kept)
        for node, w in zip(self.accepted, weights, strict=True):
            if w <= 0:
                node.reason = "whitened weight clipped to 0: dropped from the rubric"
                self.stats.add("zero_weight_dropped")
        criteria = make_criteria([{"text": node.text, "weight": round(w * scale, 6)} for node, w in kept])
        for (node, _), criterion in zip(kept, criteria, strict=True):
            node.reason = "; ".join(filter(None, [f"criterion {criterion.id}", node.reason]))
        provenance = make_provenance("decompose", self.ctx, source=source, parameters=parameters,
                                     stats=self.stats_dict())
        return make_rubric(id=_rubric_id(self.group.id), title=f"RRD rubric for prompt {self.group.id}",
                           scope="prompt", prompt_id=self.group.id, prompt=self.group.text, criteria=criteria,
                           provenance=provenance)


def _reasons(stats: Stats) -> str:
    if not stats.reasons:
        return "no rubric survived"
    return "rejected: " + ", ".join(f"{reason} ×{count}" for reason, count in stats.reasons.most_common(4))


def _rubric_id(prompt_id: str) -> str:
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9_.:-]+", "-", prompt_id).strip("-_.:")
    return f"rrd-{slug or hashlib.sha256(prompt_id.encode()).hexdigest()[:12]}"


def _check_options(n: int, max_depth: int, max_rejections: int, overlap: float, samples: int, ridge: float) -> None:
    problems = []
    if n < 0:
        problems.append(f"n must be ≥ 0, got {n}")
    if max_depth < 0:
        problems.append(f"max_depth must be ≥ 0, got {max_depth}")
    if max_rejections < 1:
        problems.append(f"max_rejections must be ≥ 1, got {max_rejections}")
    if not 0 < overlap <= 1:
        problems.append(f"overlap must be in (0, 1], got {overlap}")
    if samples < 0:
        problems.append(f"samples must be ≥ 0, got {samples}")
    if ridge < 0:
        problems.append(f"ridge must be ≥ 0, got {ridge}")
    if problems:
        raise RubrickitError("decompose: " + "; ".join(problems))


async def _run_group(group: PromptGroup, ctx: GenContext, options: _Options, policies: Sequence[_Policy],
                     samples: int, parameters: Mapping[str, Any], source: str | None) -> tuple[_GroupRun, Any]:
    run = _GroupRun(group, ctx, options)
    try:
        await run.build_pool(policies, samples)
        await run.propose()
        await run.loop()
        rubric = run.rubric(parameters, source)
    except (_Skip, GenerationFailed) as error:
        return run, str(getattr(error, "reason", error))
    return run, rubric


async def agenerate(groups: list[PromptGroup], ctx: GenContext, *, source: str | None,
                    embedding_model: str | None = None, n: int = 2, max_depth: int = 3, max_rejections: int = 15,
                    overlap: float = 0.7, policy: Sequence[Any] = (), samples: int = 4,
                    ridge: float = 0.1) -> GenerationResult:
    """RRD on every prompt group: one whitened-weighted rubric per group (see the module docstring).

    ``policy`` lists model specs (or backend objects) that each add ``samples`` responses to every group's pool;
    their judges are created here and closed before returning. Groups that produce no rubric are listed in
    ``skipped`` with the reason.
    """
    _check_options(n, max_depth, max_rejections, overlap, samples, ridge)
    options = _Options(n=n, max_depth=max_depth, max_rejections=max_rejections, overlap=overlap, ridge=ridge,
                       embedding_model=embedding_model or ctx.embedding_model)
    parameters = {"n": n, "max_depth": max_depth, "max_rejections": max_rejections, "overlap": overlap,
                  "policy": [p if isinstance(p, str) else getattr(p, "spec", type(p).__name__) for p in policy],
                  "samples": samples, "ridge": ridge, "prefilter_cosine": PREFILTER_COSINE,
                  "max_children": MAX_CHILDREN, "embedding_model": options.embedding_model or "all-MiniLM-L6-v2",
                  "weights": "whitened uniform, mean 1"}
    policies: list[_Policy] = []
    try:
        for spec in policy:
            policies.append(_Policy(spec, ctx))
        outcomes = await asyncio.gather(*(_run_group(g, ctx, options, policies, samples, parameters, source)
                                          for g in groups))
    finally:
        for item in policies:
            await item.judge.aclose()
    rubrics, skipped = [], []
    stopped: Counter[str] = Counter()
    deepest = 0
    for group, (run, outcome) in zip(groups, outcomes, strict=True):
        ctx.stats.merge(run.stats)
        if isinstance(outcome, Rubric):
            rubrics.append(outcome)
        else:
            skipped.append({"prompt_id": group.id, "reason": outcome})
        if run.nodes:
            stopped[run.stopped_by] += 1
            deepest = max(deepest, max((n.depth for n in run.nodes if n.values), default=0))
    stats = ctx.stats.as_dict()
    stats.update(prompts=len(groups), rubrics=len(rubrics), skipped=len(skipped), max_depth_reached=deepest,
                 pool_size=sum(len(run.pool) for run, _ in outcomes),
                 accepted=sum(len(run.accepted) for run, _ in outcomes))
    if stopped:
        stats["stopped_by"] = dict(sorted(stopped.items()))
    return GenerationResult(method="decompose", rubrics=rubrics, stats=stats, skipped=skipped)
