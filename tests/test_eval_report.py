"""The HTML report: self-contained (no external URLs), escapes untrusted text, and renders in headless Chromium
(installed from Debian's packages by tests/setup_chromium.sh when missing) to a non-blank screenshot."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from rubrickit.eval import render_report, summarize

SETUP = Path(__file__).parent / "setup_chromium.sh"
EVIL = '<script>alert("x")</script><img src="https://evil.example/x.png">'


def _records() -> list[dict]:
    rows = [{"type": "run", "config": "none", "judge": "fake:x", "mode": "logprob", "probes": ["position", "length"],
             "accounting": {"calls": 8, "input_tokens": 100, "output_tokens": 8, "cost": None}, "elapsed_s": 1.0}]
    for n in range(8):
        label = "AB"[n % 2]
        winner = label if n < 5 else ("B" if label == "A" else "A")
        p_a = 0.9 if winner == "A" else 0.2
        rows.append({"type": "pair", "config": "none", "pair_id": f"p{n}", "subset": f"sub{n % 3}", "label": label,
                     "winner": winner, "winner_ab": winner, "winner_ba": winner if n % 4 else "A",
                     "consistent": bool(n % 4), "p_a": p_a, "margin": 2 * p_a - 1, "errors": 0, "status": "ok",
                     "prompt": f"Prompt {n} {EVIL}", "response_a": f"resp A {EVIL}", "response_b": "resp B",
                     "rationale": f"because {EVIL}"})
    rows.append({"type": "probe", "config": "none", "probe": "length", "pair_id": "p0", "outcome": "hit"})
    return rows


def test_report_escapes_untrusted_text_and_has_no_external_urls() -> None:
    page = render_report(_records())
    assert "<script" not in page and "alert(&quot;x&quot;)" in page
    assert "&lt;img src=&quot;https://evil.example" in page  # shown as text, never loaded
    unescaped_urls = re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.I)
    assert unescaped_urls == [] and "@import" not in page and "url(" not in page
    assert "<svg" in page and "Reliability of P(A)" in page and "Worst disagreements" in page
    assert "Per subset" in page and "sub0" in page and "length" in page


def test_report_shows_every_configuration() -> None:
    records = _records() + [dict(r, config="rubric:x") for r in _records()]
    page = render_report(records, summary=summarize(records))
    assert "Configurations side by side" in page and "rubric:x" in page


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into rows of pixel bytes (pure Python)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, channels, rows


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    done = subprocess.run(["sh", str(SETUP)], capture_output=True, text=True, timeout=600)
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(f"headless Chromium could not be installed: {done.stderr.strip() or done.returncode}")
    return found


def test_report_renders_non_blank_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    page = tmp_path / "report.html"
    page.write_text(render_report(_records()), encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1000,800",
                    page.as_uri()], capture_output=True, timeout=180, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    width, channels, rows = _png_pixels(shot.read_bytes())
    pixels = {row[i:i + 3] for row in rows[::4] for i in range(0, width * channels, channels * 4)}
    dark = sum(1 for row in rows[::4] for i in range(0, width * channels, channels * 4) if sum(row[i:i + 3]) < 300)
    assert len(pixels) > 20, "the screenshot is (nearly) one colour"
    assert dark > 50, "no text or plot was drawn"
