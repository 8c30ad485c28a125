"""Write the hostile corpus beside this file: ``python tests/data/hostile/make_corpus.py`` (deterministic)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROW = b'{"id": "1", "prompt": "hi", "response": "ok"}\n'


def main() -> None:
    # Billion laughs: 9 levels of 9 aliases each, 9**9 strings from a few hundred bytes.
    lines = ["id: lol", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join(f"*{previous}" for _ in range(9)) + "]")
        previous = name
    lines.append("criteria: *i")
    files: dict[str, bytes] = {
        "billion-laughs.yaml": ("\n".join(lines) + "\n").encode(),
        "deep-nesting.json": b"[" * 5000 + b"]" * 5000 + b"\n",
        "deep-nesting.yaml": b"id: deep\ncriteria: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "deep-line.rubrics.jsonl": b'{"id": "x", "criteria": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
        "non-utf8.yaml": "id: caf\xe9\ncriteria:\n  - id: a\n    text: Se\xf1or.\n".encode("latin-1"),
        "non-utf8.jsonl": ROW + '{"id": "2", "prompt": "caf\xe9", "response": "ok"}\n'.encode("latin-1"),
        # A gzip stream cut off inside its first line.
        "corrupt.jsonl.gz": gzip.compress(ROW * 200, mtime=0)[:40],
        "not-gzip.jsonl.gz": ROW,
        "empty.jsonl": b"",
        "blank-lines.jsonl": b"\n\n  \n",
        "misspelt-reference.jsonl": (json.dumps({"id": "1", "prompt": "2+2?", "response": "4", "refrence": "4"})
                                     + "\n").encode(),
        "misspelt-prompt-id.jsonl": (json.dumps({"id": "1", "prompt": "2+2?", "response": "4", "promt_id": "p1"})
                                     + "\n").encode(),
        "huge-integer.jsonl": b'{"id": ' + b"9" * 5000 + b', "prompt": "p", "response": "r"}\n',
        # 17 MiB once inflated: past the 16 MiB limit of a rubric file and of one JSONL line.
        "inflates-past-limit.yaml.gz": gzip.compress(b"#" * (17 << 20), mtime=0),
        "long-line.jsonl.gz": gzip.compress(b'{"id": "1", "prompt": "p", "response": "' + b"a" * (17 << 20)
                                            + b'"}\n', mtime=0),
    }
    for name, data in files.items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
