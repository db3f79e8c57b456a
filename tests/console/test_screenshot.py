"""The README's console screenshot is current: regenerated against the demo, the page has the
structure committed beside the picture (sections, columns, backends, models, GPUs), not the same pixels."""

from __future__ import annotations

import json

import pytest

from tests.console.screenshot import PICTURE, SIZE, STRUCTURE, capture, png_size
from tests.demos import REPO

pytestmark = pytest.mark.tools


async def test_the_screenshot_shows_the_page_as_it_is_now() -> None:
    picture, structure = await capture()
    assert png_size(picture) == SIZE
    committed = json.loads(STRUCTURE.read_text())
    assert structure == committed, "the console changed: run `make screenshot` and commit docs/console.*"
    assert png_size(PICTURE.read_bytes()) == SIZE
    readme = (REPO / "README.md").read_text()
    assert "](docs/console.png)" in readme
