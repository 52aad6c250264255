"""Write docs/settings.md from the setting declarations and tests/settings_coverage.py."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from settings_coverage import COVERAGE  # noqa: E402

from llm_studio.config.docs import settings_markdown  # noqa: E402

DOC = ROOT / "docs" / "settings.md"


def render() -> str:
    return settings_markdown(COVERAGE) + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
