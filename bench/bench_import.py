"""Benchmark: importing a 1,000,000-row csv (about 60 MB) through the import service.

The import copies the file, reads it once with every check (shifted rows, NUL, cell limit,
empty answers), renders the preview and commits. Compared in the same process against the
least any import must do: copying the file and one `pandas.read_csv`. Prints both, the
ratio, and the peak RSS of the process.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS = 1_000_000


def write_csv(path: Path) -> None:
    with open(path, "w") as fh:
        fh.write("instruction,output\n")
        for i in range(ROWS):
            fh.write(f"Question number {i}: what is {i} plus one?,It is {i + 1}.\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["H2O_LLM_STUDIO_WORKDIR"] = tmp
        csv = Path(tmp) / "big.csv"
        write_csv(csv)
        import pandas as pd

        from llm_studio.store.import_types import InMemoryRecords
        from llm_studio.store.imports import ImportService

        start = time.perf_counter()
        shutil.copy(csv, Path(tmp) / "copy.csv")
        pd.read_csv(Path(tmp) / "copy.csv", keep_default_na=False, na_values=[""])
        baseline = time.perf_counter() - start

        start = time.perf_counter()
        ImportService(InMemoryRecords()).import_dataset("upload", {"paths": [str(csv)]}, name="big")
        checked = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"1M-row csv: copy + read_csv {baseline:.2f} s; import with checks {checked:.2f} s")
    print(f"ratio import / baseline: {checked / baseline:.2f}x; peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
