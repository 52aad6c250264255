"""Derive the DPO, classification and regression demo datasets from examples/data/demo_train.csv.

Deterministic: running it again writes the same files. These datasets have a single prompt
column, so a row's `input` (the text its instruction is about) is folded into `instruction`,
after a blank line: without it the answer could not follow from the prompt.
- demo_dpo.csv: the demo answer is `output` (chosen); `rejected_response` is another row's answer.
- demo_classification.csv: `label` is the task family of the instruction (0..4).
- demo_regression.csv: `target` is the number of words of the answer.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent.parent / "examples" / "data"
FAMILIES = (
    ("arithmetic", r"\b(plus|minus|times|add|subtract)\b"),
    ("capitals", r"\bcapital\b"),
    ("spelling", r"\b(spell|backwards|reversed|letter)\b"),
    ("opposites", r"\bopposite\b"),
    ("other", r".*"),
)


def family(instruction: str) -> int:
    for index, (_, pattern) in enumerate(FAMILIES):
        if re.search(pattern, instruction, flags=re.IGNORECASE):
            return index
    return len(FAMILIES) - 1


def with_input(instruction: str, text: str) -> str:
    return f"{instruction}\n\n{text}" if text else instruction


def main() -> None:
    df = pd.read_csv(DATA / "demo_train.csv", keep_default_na=False)
    roots = df[df["parent_id"] == ""].reset_index(drop=True)
    roots["instruction"] = [
        with_input(i, t) for i, t in zip(roots["instruction"], roots["input"], strict=True)
    ]
    rng = np.random.default_rng(7)
    shift = rng.permutation(len(roots))
    dpo = roots[["id", "instruction", "output"]].copy()
    rejected = roots["output"].to_numpy()[shift]
    same = rejected == dpo["output"].to_numpy()
    rejected[same] = "I do not know."
    dpo["rejected_response"] = rejected
    dpo.to_csv(DATA / "demo_dpo.csv", index=False)

    labelled = roots[["instruction"]].copy()
    labelled["label"] = [family(text) for text in roots["instruction"]]
    labelled.to_csv(DATA / "demo_classification.csv", index=False)

    numbers = roots[["instruction", "output"]].copy()
    numbers["target"] = [float(len(text.split())) for text in roots["output"]]
    numbers[["instruction", "target"]].to_csv(DATA / "demo_regression.csv", index=False)
    print(
        f"wrote {len(dpo)} DPO, {len(labelled)} classification and {len(numbers)} regression rows"
    )


if __name__ == "__main__":
    main()
