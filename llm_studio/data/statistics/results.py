"""What the statistics are: plain dataclasses, written to and read back from the JSON cache."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Histogram:
    """`counts[i]` values fall in [edges[i], edges[i + 1]). Lengths are whole numbers and the
    edges too, so bin i holds the lengths edges[i] .. edges[i + 1] - 1."""

    counts: list[int]
    edges: list[float]

    def bars(self) -> list[tuple[str, int]]:
        """(label, count) per bin for a chart: "7" for a bin of one length, else "10–14"."""
        out = []
        for i, count in enumerate(self.counts):
            lo, hi = int(self.edges[i]), int(self.edges[i + 1]) - 1
            out.append((str(lo) if hi <= lo else f"{lo}–{hi}", int(count)))
        return out


@dataclass
class TextLengths:
    """Lengths of a text column's non-missing values."""

    chars_mean: float | None
    chars_min: int | None
    chars_max: int | None
    words_mean: float | None
    words_min: int | None
    words_max: int | None


@dataclass
class ColumnStatistics:
    name: str
    dtype: str
    count: int  # non-missing values
    missing: int
    unique: int  # distinct non-missing values
    min: float | None = None  # numeric columns only
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    text: TextLengths | None = None  # text columns only


@dataclass
class LengthDistribution:
    """Per-row lengths of one field of the samples, in words or tokens.

    Fields: `system`, `prompt` (the prompt columns joined as training joins them), `answer`,
    `rejected_prompt` / `rejected_answer` (DPO) and `total` (system + prompt + answer of the
    row; the prompt format's extra text and earlier turns of a chain are not counted). A missing
    cell counts as empty text (0), as in training.
    """

    field: str
    unit: str  # "words" | "tokens"
    rows: int  # rows measured (tokens: a sample when the frame is large)
    mean: float
    min: int
    max: int
    quantiles: dict[str, float]  # "50%", "95%", "99%"
    histogram: Histogram


@dataclass
class DatasetStatistics:
    path: str
    rows: int
    columns: list[ColumnStatistics]
    lengths: list[LengthDistribution]
    columns_used: dict[str, list[str]]
    tokenizer: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0  # time the computation took
    cached: bool = False  # True when read back from the cache (not stored in it)

    def column(self, name: str) -> ColumnStatistics:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def length(self, field_name: str, unit: str = "words") -> LengthDistribution | None:
        for d in self.lengths:
            if d.field == field_name and d.unit == unit:
                return d
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetStatistics:
        columns = []
        for c in data["columns"]:
            c = dict(c)
            text = c.pop("text", None)
            columns.append(ColumnStatistics(**c, text=TextLengths(**text) if text else None))
        lengths = []
        for d in data["lengths"]:
            d = dict(d)
            hist = Histogram(**d.pop("histogram"))
            lengths.append(LengthDistribution(**d, histogram=hist))
        rest = {k: v for k, v in data.items() if k not in ("columns", "lengths")}
        return cls(columns=columns, lengths=lengths, **rest)
