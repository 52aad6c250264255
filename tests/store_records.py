"""Dataset and experiment records for store tests: plausible values, any field overridable."""

from __future__ import annotations

from llm_studio.store import DatasetRecord, ExperimentRecord


def ds(name: str, **kw) -> DatasetRecord:
    values = dict(
        name=name,
        path=f"data/user/{name}",
        config_file=f"data/user/{name}/text_causal_language_modeling_config.yaml",
        problem_type="text_causal_language_modeling_config",
        train_dataframe=f"data/user/{name}/train.csv",
        train_rows=10,
    )
    values.update(kw)
    return DatasetRecord(**values)


def ex(name: str, dataset_id: int, **kw) -> ExperimentRecord:
    values = dict(
        name=name,
        dataset_id=dataset_id,
        path=f"output/user/{name}",
        problem_type="text_causal_language_modeling_config",
        config_file=f"output/user/{name}/cfg.yaml",
    )
    values.update(kw)
    return ExperimentRecord(**values)
