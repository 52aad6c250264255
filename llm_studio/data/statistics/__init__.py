"""Dataset statistics for the "View datasets" page: per-column numbers, prompt/answer length
histograms (in words, optionally in tokens) and the Summary tab, cached as JSON.

One module per responsibility:
- `results`: the dataclasses (`DatasetStatistics` and its parts), as cached in JSON;
- `measures`: vectorized text measures (characters, words, tokens), histograms, quantiles;
- `frame`: the statistics of a dataframe in memory for given dataset settings;
- `cache`: the statistics and row counts of a file, cached as JSON;
- `dataset_summary`: the Summary tab.

Everything is vectorized (pyarrow + numpy). No torch or transformers at import time: a
tokenizer is loaded only when token lengths are asked for.
"""

from llm_studio.data.statistics.cache import STATS_VERSION, count_rows, dataset_statistics
from llm_studio.data.statistics.dataset_summary import DatasetSummary, summary
from llm_studio.data.statistics.frame import (
    TOKEN_ROWS_LIMIT,
    column_statistics,
    columns_used,
    frame_statistics,
)
from llm_studio.data.statistics.measures import (
    DEFAULT_BINS,
    char_lengths,
    distribution,
    histogram,
    load_tokenizer,
    text_array,
    token_lengths,
    word_counts,
)
from llm_studio.data.statistics.results import (
    ColumnStatistics,
    DatasetStatistics,
    Histogram,
    LengthDistribution,
    TextLengths,
)

__all__ = [
    "DEFAULT_BINS",
    "STATS_VERSION",
    "TOKEN_ROWS_LIMIT",
    "ColumnStatistics",
    "DatasetStatistics",
    "DatasetSummary",
    "Histogram",
    "LengthDistribution",
    "TextLengths",
    "char_lengths",
    "column_statistics",
    "columns_used",
    "count_rows",
    "dataset_statistics",
    "distribution",
    "frame_statistics",
    "histogram",
    "load_tokenizer",
    "summary",
    "text_array",
    "token_lengths",
    "word_counts",
]
