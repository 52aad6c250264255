"""Experiment loggers: what a tiny run logs to TensorBoard and to Neptune (offline mode only, no
network) is read back from disk and compared with charts.jsonl."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import load_cfg, tiny_config

from llm_studio.config.checks import check_config
from llm_studio.config.settings import ConfigError
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.training.loggers import LOGGERS, build_logger
from llm_studio.training.loop import run_experiment

SECRET = "nep-SECRET-token-7f3a9c"  # a dummy API token that must never reach a file or a log
FAST = {
    "dataset": {"data_sample": 0.5},
    "training": {"epochs": 1, "evaluation_epochs": 1.0},
    "prediction": {"max_length_inference": 1},
}


def config(tmp_path, model_dir, csv, **logging_section):
    return load_cfg(tiny_config(model_dir, csv, tmp_path / "out", logging=logging_section, **FAST))


def train(cfg) -> ExperimentFolder:
    run_experiment(cfg, ExperimentStatus(state="running"))
    return ExperimentFolder(cfg.output_directory)


def series(folder: ExperimentFolder, name: str) -> list[tuple[int, float]]:
    points, _ = folder.read_charts()
    return [(p.step, p.value) for p in points if p.name == name]


def read_neptune_offline(data_dir: Path) -> list:
    """The operations of the single offline run under data_dir, decoded by Neptune itself.

    Offline, neptune 1.14 queues each operation as one JSON line {"obj": op, "version": n, "at": t}
    in <data_dir>/offline/run__<id>__<pid>__<key>/data-<first version>.log, for `neptune sync`.
    """
    from neptune.internal.operation import Operation

    runs = list((data_dir / "offline").glob("run__*"))
    assert len(runs) == 1, runs
    files = sorted(runs[0].glob("data-*.log"), key=lambda p: int(p.stem.split("-")[1]))
    lines = [line for f in files for line in f.read_text(encoding="utf-8").splitlines() if line]
    return [Operation.from_dict(json.loads(line)["obj"]) for line in lines]


def neptune_series(ops, name: str) -> list[tuple[int, float]]:
    from neptune.internal.operation import LogFloats

    path = name.split("/")
    return [
        (int(v.step), v.value)
        for op in ops
        if isinstance(op, LogFloats) and op.path == path
        for v in op.values
    ]


def neptune_assigned(ops) -> dict[str, object]:
    return {"/".join(op.path): op.value for op in ops if type(op).__name__.startswith("Assign")}


def test_registry_names_every_logger_choice():
    assert set(LOGGERS) == {"None", "Neptune", "TensorBoard"}
    cfg = load_cfg(tiny_config(Path("m"), Path("t.csv"), Path("o")))
    for name in LOGGERS:
        cfg.logging.logger = name
        cfg.logging.neptune_project = "acme/llm"
        assert not any("logging.logger" in e for e in check_config(cfg, gpu_count=0).errors)


def test_tensorboard_event_files_hold_every_chart_point(tmp_path, tiny_model_dir, pattern_csv):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = train(config(tmp_path, tiny_model_dir, pattern_csv, logger="TensorBoard"))
    events = EventAccumulator(str(folder.path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    for name in ("train/loss", "train/lr", "validation/loss", "validation/BLEU"):
        expected = series(folder, name)
        logged = [(e.step, e.value) for e in events.Scalars(name)]
        assert [s for s, _ in logged] == [s for s, _ in expected], name
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)
    train_loss = series(folder, "train/loss")
    assert [s for s, _ in train_loss] == list(range(1, folder.read_status().total_steps + 1))
    assert "cfg/text_summary" in events.Tags()["tensors"]


def test_tensorboard_rerun_into_the_same_folder_starts_fresh(tmp_path):
    cfg = load_cfg(tiny_config(Path("m"), Path("t.csv"), tmp_path / "out"))
    cfg.logging.logger = "TensorBoard"
    folder = ExperimentFolder(cfg.output_directory)
    for _ in range(2):
        chart_logger = build_logger(cfg, folder)
        chart_logger.log("train/loss", 1, 0.5)
        chart_logger.close()
        chart_logger.close()  # closing twice is harmless
    assert len(list((folder.path / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_neptune_offline_data_stays_in_the_experiment_folder(
    tmp_path, tiny_model_dir, pattern_csv, monkeypatch
):
    """Without NEPTUNE_DATA_DIRECTORY, Neptune's queue once landed in `.neptune` of the working
    directory (the repository root for runs the GUI starts); now it is the experiment's."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEPTUNE_MODE", "offline")
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", "")  # unset; restored after the test
    cfg = config(
        tmp_path, tiny_model_dir, pattern_csv, logger="Neptune", neptune_project="acme/llm"
    )
    folder = train(cfg)
    assert not (tmp_path / ".neptune").exists()
    ops = read_neptune_offline(folder.path / ".neptune")
    assert neptune_series(ops, "train/loss") == series(folder, "train/loss")


def test_neptune_offline_logs_config_and_charts_without_the_token(
    tmp_path, tiny_model_dir, pattern_csv, monkeypatch, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    data_dir = tmp_path / "neptune-data"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEPTUNE_MODE", "offline")
    monkeypatch.setenv("NEPTUNE_API_TOKEN", SECRET)
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(data_dir))
    cfg = config(
        tmp_path, tiny_model_dir, pattern_csv, logger="Neptune", neptune_project="acme/llm"
    )
    cfg.experiment_name = "tiny-neptune"
    folder = train(cfg)

    ops = read_neptune_offline(data_dir)
    for name in ("train/loss", "train/lr", "validation/loss", "validation/BLEU"):
        assert neptune_series(ops, name) == series(folder, name), name
    assert len(series(folder, "train/loss")) == folder.read_status().total_steps > 2
    assigned = neptune_assigned(ops)
    assert assigned["sys/name"] == "tiny-neptune"
    assert assigned["cfg/training/epochs"] == 1
    assert assigned["cfg/logging/neptune_project"] == "acme/llm"
    assert assigned["cfg/dataset/prompt_column"] == "['instruction']"
    assert not (tmp_path / ".neptune").exists(), "NEPTUNE_DATA_DIRECTORY is honoured"

    out, err = capfd.readouterr()
    assert "Neptune logger: project acme/llm, mode offline" in caplog.text
    for text in (caplog.text, out, err):
        assert SECRET not in text
    for root in (folder.path, data_dir):
        for path in root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def test_neptune_without_a_project_names_the_setting(
    tmp_path, tiny_model_dir, pattern_csv, monkeypatch
):
    monkeypatch.setenv("NEPTUNE_MODE", "offline")
    monkeypatch.setenv("NEPTUNE_API_TOKEN", SECRET)
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "neptune-data"))
    cfg = config(tmp_path, tiny_model_dir, pattern_csv, logger="Neptune", neptune_project="")
    with pytest.raises(ConfigError, match=r"^logging\.neptune_project: ") as exc:
        run_experiment(cfg, ExperimentStatus(state="running"))
    assert SECRET not in str(exc.value)
    assert not (tmp_path / "neptune-data").exists()


def test_neptune_online_without_a_token_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("NEPTUNE_MODE", raising=False)  # async, the default: a token is needed
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    cfg = load_cfg(tiny_config(Path("m"), Path("t.csv"), tmp_path / "out"))
    cfg.logging.logger = "Neptune"
    cfg.logging.neptune_project = "acme/llm"
    with pytest.raises(ConfigError, match=r"^NEPTUNE_API_TOKEN: "):
        build_logger(cfg, ExperimentFolder(cfg.output_directory))


def test_logger_none_writes_nothing_extra(tmp_path, tiny_model_dir, pattern_csv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = train(config(tmp_path, tiny_model_dir, pattern_csv, logger="None"))
    assert series(folder, "train/loss")
    assert not (folder.path / "tensorboard").exists()
    assert not (tmp_path / ".neptune").exists()
