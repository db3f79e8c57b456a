"""The README's console screenshot: `make screenshot` (`python -m tests.console.screenshot`) runs the
demo with its fake GPUs, sends a few requests through it, and has headless Chromium take
`docs/console.png`, with the page's structure beside it in `docs/console.json`.

tests/console/test_screenshot.py regenerates the structure and compares it with the committed one, so
a change to the page that the picture no longer shows fails until the screenshot is taken again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
from typing import Any

import aiohttp

from tests.browser import chromium
from tests.demos import REPO, running_demo

PICTURE = REPO / "docs" / "console.png"
STRUCTURE = REPO / "docs" / "console.json"
SIZE = (1400, 1300)
PROMPTS = ("Fix this Python traceback: KeyError in parse()", "Summarize the causes of inflation", "A haiku about GPUs")

PAGE_STRUCTURE = """(() => ({
  title: document.title,
  sections: [...document.querySelectorAll("main section")].filter((s) => !s.hidden).map((s) => ({
    id: s.id,
    heading: s.querySelector("h2").textContent,
    columns: [...s.querySelectorAll("thead th")].map((th) => th.textContent),
  })),
  backends: [...document.querySelectorAll("#backends tbody tr")].map((r) => [r.dataset.backend, r.dataset.health]),
  models: [...document.querySelectorAll("#models tbody tr")].map((r) => [r.dataset.backend, r.dataset.model]),
  gpus: document.querySelectorAll("#gpus tbody tr[data-gpu]").length,
}))()"""


async def capture() -> tuple[bytes, dict[str, Any]]:
    """The screenshot and the page's structure, from a demo started for it."""
    async with running_demo("--fake-gpus") as demo, aiohttp.ClientSession() as http:
        for prompt in PROMPTS:
            body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
            async with http.post(demo.url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
        async with chromium() as page:
            await page.goto(demo.url + "/")
            await page.wait_for("document.querySelectorAll('#requests tbody tr[data-backend]').length >= 3")
            await page.wait_for("document.querySelectorAll('#gpus tbody tr[data-gpu]').length")
            await page.type_into("#prompt", PROMPTS[0])
            await page.click("#explain-form button")
            await page.wait_for("document.getElementById('explain-chosen')")
            structure = await page.evaluate(PAGE_STRUCTURE)
            picture = await page.screenshot(*SIZE)
            assert page.errors == [], page.errors
    return picture, structure


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    picture, structure = asyncio.run(capture())
    PICTURE.write_bytes(picture)
    STRUCTURE.write_text(json.dumps(structure, indent=2) + "\n")
    print(f"wrote {PICTURE.relative_to(REPO)} ({len(picture)} bytes) and {STRUCTURE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
