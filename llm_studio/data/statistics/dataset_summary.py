"""The Summary tab of View datasets: name, problem type, dataframes and their rows, labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llm_studio.data.readers import DataError
from llm_studio.data.statistics.cache import count_rows
from llm_studio.data.statistics.frame import as_list, columns_used


@dataclass
class DatasetSummary:
    name: str
    problem_type: str
    problem_type_label: str
    train_dataframe: str
    train_rows: int | None
    validation_dataframe: str | None
    validation_rows: int | None
    validation_strategy: str
    labels: list[str]
    columns_used: dict[str, list[str]]

    def table(self) -> list[tuple[str, str]]:
        """The Summary tab's rows, as the guide lists them."""

        def shown(value) -> str:
            return "-" if value is None or value == "" else str(value)

        return [
            ("Name", self.name),
            ("Problem type", self.problem_type_label),
            ("Train dataframe", shown(self.train_dataframe)),
            ("Train rows", shown(self.train_rows)),
            ("Validation dataframe", shown(self.validation_dataframe)),
            ("Validation rows", shown(self.validation_rows)),
            ("Labels", ", ".join(self.labels) or "-"),
        ]


def _resolve(path: str) -> Path:
    from llm_studio import paths

    p = Path(path)
    return p if p.is_absolute() else paths.workdir() / p


def summary(
    name: str,
    problem_type: str,
    dataset_cfg,
    cache_dir: Path | None = None,
    train_rows: int | None = None,
    validation_rows: int | None = None,
) -> DatasetSummary:
    """The Summary tab. Rows not given are counted (relative paths are relative to the
    workdir); a file that cannot be read gives None rows rather than an error."""
    from llm_studio.config.problem_types import PROBLEM_TYPE_LABELS

    def rows(path: str | None, given: int | None) -> int | None:
        if given is not None or not path:
            return given
        try:
            return count_rows(_resolve(path), cache_dir)
        except (DataError, OSError):
            return None

    train = getattr(dataset_cfg, "train_dataframe", "") or ""
    validation = getattr(dataset_cfg, "validation_dataframe", None) or None
    if validation in ("None", "none"):
        validation = None
    return DatasetSummary(
        name=name,
        problem_type=problem_type,
        problem_type_label=PROBLEM_TYPE_LABELS.get(problem_type, problem_type),
        train_dataframe=train,
        train_rows=rows(train, train_rows),
        validation_dataframe=validation,
        validation_rows=rows(validation, validation_rows),
        validation_strategy=getattr(dataset_cfg, "validation_strategy", "automatic"),
        labels=as_list(getattr(dataset_cfg, "answer_column", None)),
        columns_used=columns_used(dataset_cfg),
    )
