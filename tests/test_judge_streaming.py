"""The engine on long inputs: items pulled lazily and bounded by the calls in flight, fingerprints once per rubric."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import rubrickit.rubric.model as rubric_module
from rubrickit.backends.fake import FakeBackend
from rubrickit.judge import Judge
from rubrickit.rubric import Criterion, Rubric

TEN = Rubric(id="ten", criteria=[Criterion(id=f"c{i}", text=f"The response does thing number {i}.")
                                 for i in range(10)])


def items(n: int, pulled: list[int]) -> Iterator[dict[str, str]]:
    for i in range(n):
        pulled[0] += 1
        yield {"id": f"i{i}", "prompt": f"Question {i}?", "response": f"Answer {i}."}


@pytest.mark.parametrize(("concurrency", "criteria"), [(8, 10), (64, 10), (16, 1)])
def test_items_are_pulled_as_calls_free_up_not_all_at_once(concurrency: int, criteria: int) -> None:
    rubric = TEN if criteria == 10 else Rubric(id="one", criteria=TEN.criteria[:1])
    judge = Judge(FakeBackend(latency=0.002), concurrency=concurrency, use_cache=False, progress=False)
    pulled = [0]
    ahead = []

    async def run() -> int:
        seen = 0
        async for _ in judge.ascore_many(rubric, items(400, pulled)):
            seen += 1
            ahead.append(pulled[0] - seen)
        return seen

    assert asyncio.run(run()) == 400
    # Started but unfinished items stay near twice the concurrency in calls (never the whole input).
    bound = max(4, 2 * concurrency // criteria) + 2
    assert max(ahead) <= bound, (max(ahead), bound)
    assert max(ahead) >= min(400, concurrency // criteria)  # and enough to keep every slot busy


def test_calls_in_flight_reach_the_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBackend(latency=0.01)
    in_flight = [0, 0]
    original = fake.complete

    async def counting(request):  # type: ignore[no-untyped-def]
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            return await original(request)
        finally:
            in_flight[0] -= 1

    monkeypatch.setattr(fake, "complete", counting)
    judge = Judge(fake, concurrency=32, use_cache=False, progress=False)
    records = judge.score_many(TEN, items(60, [0]))
    assert len(list(records)) == 60
    assert in_flight[1] == 32


def test_fingerprints_are_computed_once_per_rubric_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [0]
    original = rubric_module._digest

    def counted(payload):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original(payload)

    monkeypatch.setattr(rubric_module, "_digest", counted)
    judge = Judge(FakeBackend(), concurrency=8, use_cache=False, progress=False)
    records = list(judge.score_many(TEN, items(50, [0])))
    assert calls[0] == len(TEN.criteria) + 1  # 11 digests for 50 records (was 21 per record)
    assert {r.rubric_fingerprint for r in records} == {TEN.fingerprint}
    assert all(v.criterion_fingerprint == c.fingerprint for r in records for v, c in zip(r.verdicts, TEN.criteria,
                                                                                       strict=True))


def test_a_changed_rubric_gets_its_own_fingerprints_in_a_later_run() -> None:
    judge = Judge(FakeBackend(), use_cache=False, progress=False)
    first = list(judge.score_many(TEN, items(3, [0])))
    changed = TEN.model_copy(update={"criteria": [*TEN.criteria[:9], Criterion(id="c9", text="Something else.")]})
    second = list(judge.score_many(changed, items(3, [0])))
    assert {r.rubric_fingerprint for r in first} == {TEN.fingerprint}
    assert {r.rubric_fingerprint for r in second} == {changed.fingerprint} != {TEN.fingerprint}


# -- files: checked whole, read as judged; records read back from the output ---------------------------------------


def write_items(path, n: int, *, bad_line: int | None = None) -> None:  # type: ignore[no-untyped-def]
    import json

    lines = []
    for i in range(n):
        row = {"id": f"i{i}", "prompt": f"Question {i}?", "response": f"Answer {i}."}
        if i + 1 == bad_line:
            row.pop("response")
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")


def test_stream_items_raises_what_load_items_raises_and_reads_again_each_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rubrickit.data.items import load_items, stream_items
    from rubrickit.errors import RubricError

    data = tmp_path / "items.jsonl"
    write_items(data, 30, bad_line=17)
    with pytest.raises(RubricError) as loaded:
        load_items(data)
    with pytest.raises(RubricError) as streamed:
        stream_items(data)
    assert str(streamed.value) == str(loaded.value) and "items.jsonl:17: response" in str(streamed.value)
    write_items(data, 30)
    stream = stream_items(data)
    assert len(stream) == 30
    assert list(stream) == list(stream) == load_items(data)


def test_a_rubric_set_is_checked_against_a_streamed_file_before_any_call(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rubrickit.data.items import stream_items
    from rubrickit.errors import RubricError
    from rubrickit.rubric import RubricSet

    data = tmp_path / "items.jsonl"
    write_items(data, 5)
    only = TEN.model_copy(update={"id": "only", "prompt_id": "somewhere-else", "scope": "prompt"})
    fake = FakeBackend()
    judge = Judge(fake, use_cache=False, progress=False)
    with pytest.raises(RubricError, match="every rubric given is prompt-specific"):
        list(judge.score_many(RubricSet([only]), stream_items(data)))
    assert fake.requests == []


def test_score_files_reads_its_records_back_from_the_output_instead_of_keeping_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rubrickit.judge import score_files
    from rubrickit.judge.run import FileRecords
    from rubrickit.rubric import save_rubric

    data, rubric, out = tmp_path / "items.jsonl", tmp_path / "ten.yaml", tmp_path / "out.jsonl"
    write_items(data, 40)
    save_rubric(TEN, rubric)
    def script(request):  # type: ignore[no-untyped-def]
        asked = next(m.content for m in request.messages if m.role == "user")  # re-asks keep the first question
        unreadable = "thing number 3." in asked and "Answer 7." in asked
        return "not json" if unreadable else '{"rationale": "ok", "verdict": "met"}'

    result = score_files(rubric, data, judge=FakeBackend(script), out=out, use_cache=False, progress=False)
    in_memory = score_files(rubric, data, judge=FakeBackend(script), use_cache=False, progress=False)
    assert isinstance(result.records, FileRecords) and isinstance(in_memory.records, list)
    assert len(result.records) == 40
    by_id = {r.item_id: r for r in in_memory.records}
    assert sorted(result.records, key=lambda r: r.item_id) == sorted(by_id.values(), key=lambda r: r.item_id)
    assert (result.errors, result.error_items) == (in_memory.errors, in_memory.error_items) == (1, 1)
    assert result.stats.count == 40
    assert result.stats.coverage_sum == pytest.approx(sum(r.coverage for r in in_memory.records)) == 39.9


# -- open files at high concurrency ---------------------------------------------------------------------------------


class _Limits:
    def __init__(self, soft: int, hard: int):
        self.value = (soft, hard)
        self.set: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        return self.value

    def setrlimit(self, which: int, value: tuple[int, int]) -> None:
        if value[0] > self.value[1]:
            raise ValueError("not allowed")
        self.set.append(value)
        self.value = value


def test_the_open_files_limit_is_raised_for_high_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from rubrickit.judge import streaming

    limits = _Limits(1024, 65536)
    monkeypatch.setattr(resource, "getrlimit", limits.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", limits.setrlimit)
    streaming.ensure_open_files(512)
    assert limits.set == []  # 512 + spare fits under 1,024
    streaming.ensure_open_files(1024)
    assert limits.set == [(1024 + streaming.OPEN_FILES_SPARE, 65536)]


def test_a_hard_limit_too_low_for_the_concurrency_is_a_warning_naming_ulimit(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    from rubrickit.judge import streaming

    limits = _Limits(256, 1024)
    monkeypatch.setattr(resource, "getrlimit", limits.getrlimit)
    monkeypatch.setattr(resource, "setrlimit", limits.setrlimit)
    with pytest.warns(RuntimeWarning, match=r"ulimit -n 2304"):
        streaming.ensure_open_files(2048)
    assert limits.value == (1024, 1024)  # raised as far as the hard limit allows


def test_a_run_raises_the_young_collection_threshold_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    monkeypatch.setattr(gc, "freeze", lambda: None)  # the suite's own heap stays collectable
    before = gc.get_threshold()
    seen: list[int] = []
    fake = FakeBackend(lambda request: (seen.append(gc.get_threshold()[0]), '{"rationale": "", "verdict": "met"}')[1])
    judge = Judge(fake, use_cache=False, progress=False)
    assert len(list(judge.score_many(TEN, items(5, [0])))) == 5
    assert set(seen) == {max(10_000, before[0])}
    assert gc.get_threshold() == before
    monkeypatch.setenv("RUBRICKIT_GC_TUNING", "0")
    seen.clear()
    list(Judge(fake, use_cache=False, progress=False).score_many(TEN, items(5, [0])))
    assert set(seen) == {before[0]}
