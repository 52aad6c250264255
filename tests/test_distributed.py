"""DDP on two CPU processes (gloo) through distributed_train.sh: the same weights as one process
with the same global batch, a failure on one rank failing the run at once, validation rows in
their order, and stop/resume. docs/distributed.md describes the design these tests pin down."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from conftest import REPO, RUNNABLE, load_cfg, pattern_rows, tiny_config, write_yaml
from safetensors.torch import load_file
from support.fault_plugin import DATA_DELAY_ENV, FAULT_ENV, FAULT_RANK_ENV, with_fault_plugin

from llm_studio.experiments.folder import ExperimentFolder
from llm_studio.training.distributed import TIMEOUT_ENV, Distributed

pytestmark = pytest.mark.slow

# Dropout off, so one process and two draw nothing different; AdamW as by default.
TRAINING = {"epochs": 1, "evaluation_epochs": 1.0, "learning_rate": 0.01, "lora_dropout": 0.0}
# The same validation batches in both runs, so the same rows are generated together.
PREDICTION = {"max_length_inference": 4, "batch_size_inference": 4}


def launch(
    cfg_path,
    *extra,
    fault: str | None = None,
    rank: int | None = None,
    timeout: float = 110,
    env: dict | None = None,
):
    """`bash distributed_train.sh 2 -Y cfg.yaml ...`, with a fault injected if asked."""
    extra_env = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_STUDIO_")}
    env.update({"PYTHON": sys.executable, TIMEOUT_ENV: "60", **extra_env})
    if fault:
        env[FAULT_ENV] = fault
    if rank is not None:
        env[FAULT_RANK_ENV] = str(rank)
    command = ["bash", str(REPO / "distributed_train.sh"), "2", "-Y", str(cfg_path), *extra]
    return subprocess.run(
        command,
        cwd=REPO,
        env=with_fault_plugin(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_in_process(cfg_path) -> None:
    """The single-process reference, run here: the loop is the one train.py runs."""
    from llm_studio.config.yaml_io import load_config
    from llm_studio.experiments.folder import ExperimentStatus
    from llm_studio.training.loop import run_experiment

    cfg, _ = load_config(str(cfg_path), [])
    assert run_experiment(cfg, ExperimentStatus(state="running")).state == "finished"


@pytest.fixture(scope="module")
def make_run(tmp_path_factory, tiny_model_dir):
    from conftest import pattern_rows

    tmp = tmp_path_factory.mktemp("ddp")
    csv = tmp / "pattern.csv"
    pattern_rows().to_csv(csv, index=False)

    def make(
        name: str, batch_size: int, environment: dict | None = None, **training
    ) -> tuple[object, ExperimentFolder]:
        cfg = tiny_config(
            tiny_model_dir,
            csv,
            tmp / name,
            training={**TRAINING, "batch_size": batch_size, **training},
            prediction=PREDICTION,
            environment={**RUNNABLE["environment"], **(environment or {})},
        )
        return write_yaml(tmp / f"{name}.yaml", cfg), ExperimentFolder(tmp / name)

    return make


@pytest.fixture(scope="module")
def ddp_run(make_run):
    """Two processes of batch size 4: the global batch of one process of batch size 8."""
    cfg, folder = make_run("ddp", batch_size=4)
    result = launch(cfg)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def fault_run(make_run):
    """Two processes that validate the backbone as it is (before training), then fail on rank 1
    after step 2: the run of the failure test and the validation of the ordering test."""
    cfg, folder = make_run("fault", batch_size=4, evaluate_before_training=True)
    started = time.monotonic()
    result = launch(cfg, fault="error:2", rank=1)
    return folder, result, time.monotonic() - started


def adapter(folder: ExperimentFolder) -> dict[str, torch.Tensor]:
    return load_file(folder.adapter_dir / "adapter_model.safetensors")


def train_losses(folder: ExperimentFolder) -> list[tuple[int, float]]:
    return [(p.step, p.value) for p in folder.read_charts()[0] if p.name == "train/loss"]


def test_two_processes_train_the_weights_of_one_process_with_the_same_global_batch(
    make_run, ddp_run
):
    cfg, single = make_run("single", batch_size=8)
    train_in_process(cfg)

    assert ddp_run.read_status().state == "finished"
    expected, actual = adapter(single), adapter(ddp_run)
    assert expected.keys() == actual.keys()
    for name in expected:
        # AdamW turns float noise in tiny gradients into ~1e-5; a loss weighted per rank
        # instead of over the global batch's tokens is off by ~5e-2 here.
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-3, atol=5e-4)
    steps, losses = zip(*train_losses(ddp_run), strict=True)
    assert list(steps) == list(range(1, 10)), "one point per step: rank 0 alone charts"
    assert list(losses) == pytest.approx([v for _, v in train_losses(single)], rel=1e-5)

    log = ddp_run.logs.read_text()
    assert "DDP: 2 processes, backend gloo" in log
    assert "[rank 1]" not in log, "the other ranks log warnings to their console only"
    assert not list(ddp_run.path.glob(".data_cache*")), "the data cache is gone once read"


def test_a_failure_on_rank_1_fails_the_experiment_at_once(fault_run):
    folder, result, elapsed = fault_run
    assert result.returncode != 0
    assert elapsed < 60, f"a failed rank must not leave the others hanging ({elapsed:.0f} s)"
    status = folder.read_status()
    assert status.state == "failed"
    assert status.error.startswith("rank 1: RuntimeError"), status.error
    log = folder.logs.read_text()
    assert "ERROR [rank 1] RuntimeError: LLM_STUDIO_FAULT_AT_STEP: fault injected on rank 1" in log
    assert log.index("ERROR [rank 1]") < log.index("ERROR [rank 0]"), "the cause comes first"
    assert status.step == 2


def test_sharded_validation_writes_the_rows_in_their_order(make_run, fault_run):
    """Both validate the backbone as it is: one process with epochs 0, two processes before
    training. 19 rows in batches of 4: rank 0 validates batches 0, 2 and 4, rank 1 1 and 3."""
    cfg, folder = make_run("val_single", batch_size=4, epochs=0)
    train_in_process(cfg)
    single = pd.read_csv(folder.predictions_csv, keep_default_na=False)
    ddp = pd.read_csv(fault_run[0].predictions_csv, keep_default_na=False)
    assert len(single) == 19
    assert list(ddp.columns) == list(single.columns)
    for column in ("prompt", "target_text", "predicted_text"):
        assert ddp[column].tolist() == single[column].tolist(), column
    assert ddp["loss"].tolist() == pytest.approx(single["loss"].tolist(), rel=1e-6)
    assert ddp["BLEU"].tolist() == pytest.approx(single["BLEU"].tolist(), rel=1e-6)


def test_a_stopped_ddp_run_resumes_to_the_weights_of_an_uninterrupted_one(make_run, ddp_run):
    """...from the preprocessing cache of the stopped run: the data file may be gone."""
    import yaml

    from llm_studio.config.settings import ConfigError
    from llm_studio.training.resume import load_training_state

    cfg, folder = make_run("stopped", batch_size=4)
    stopped = launch(cfg, fault="SIGTERM:4", rank=0)  # as a stop reaches rank 0 alone
    assert stopped.returncode != 0
    status = folder.read_status()
    assert status.state == "stopped" and status.step == 4
    assert "resume with bash distributed_train.sh 2 -Y cfg.yaml --resume" in folder.logs.read_text()
    with pytest.raises(ConfigError, match="a run of 2 process.es., this one has 1"):
        load_training_state(folder.resume_dir, None, None, None, {}, Distributed())
    cache = folder.path / ".data_cache"
    assert sorted(p.name for p in cache.iterdir()) == ["data.pkl", "train_samples.pkl"]

    csv = Path(yaml.safe_load(cfg.read_text())["dataset"]["train_dataframe"])
    csv.rename(csv.with_suffix(".away"))  # the resumed run trains on the cached samples
    try:
        resumed = launch(folder.cfg_yaml, "--resume")
    finally:
        csv.with_suffix(".away").rename(csv)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert folder.read_status().state == "finished"
    log = folder.logs.read_text()
    assert "Resuming at step 4 of 9" in log
    assert "Preprocessing: train_samples.pkl from the run this one resumes" in log
    assert not cache.exists(), "a finished run leaves no cache behind"
    expected, actual = adapter(ddp_run), adapter(folder)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-5, atol=1e-6)
    assert train_losses(folder) == train_losses(ddp_run)


def test_the_other_ranks_wait_for_slow_preprocessing_without_a_collective_timeout(make_run):
    """Rank 0 reads the data 12 s late while collectives time out after 5 s (enough for the
    rest of this tiny run): the other ranks wait for its cache file, not in a collective,
    and the run finishes."""
    cfg, folder = make_run("slow_data", batch_size=4, epochs=1)
    env = {DATA_DELAY_ENV: "12", TIMEOUT_ENV: "5"}
    result = launch(cfg, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "rank 0 reads the data after 12 s" in folder.logs.read_text()
    assert folder.read_status().state == "finished"


# The first DeepSpeed run on the CPU compiles its shared-memory op (about a minute on 2 cores;
# cached inside the environment after), so its launches may take longer.
DEEPSPEED_TIMEOUT = 300


def stop_and_resume(cfg_path, folder: ExperimentFolder, on_stop=None) -> str:
    """Stop the run after step 4 (SIGTERM on rank 0), check the stopped folder with
    `on_stop(folder)`, resume it to the end, and return its log."""
    stopped = launch(cfg_path, fault="SIGTERM:4", rank=0, timeout=DEEPSPEED_TIMEOUT)
    assert stopped.returncode != 0
    assert folder.read_status().state == "stopped", stopped.stdout[-3000:] + stopped.stderr[-3000:]
    if on_stop:
        on_stop(folder)
    resumed = launch(folder.cfg_yaml, "--resume", timeout=DEEPSPEED_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = folder.logs.read_text()
    assert "Resuming at step 4 of 9" in log
    return log


# --- FSDP: the model sharded instead of replicated ---
def checkpoint_weights(folder: ExperimentFolder) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder.checkpoint_dir)  # plain transformers
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_fsdp_with_lora_trains_the_weights_of_ddp_and_saves_one_whole_checkpoint(make_run, ddp_run):
    """`use_fsdp: true` (the guide's key): the adapter, the merged checkpoint and the
    validation rows of DDP. 5 validation batches: rank 1 runs one batch twice to keep step."""
    cfg, fsdp = make_run("fsdp_lora", batch_size=4, environment={"use_fsdp": True})
    result = launch(cfg)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    log = fsdp.logs.read_text()
    assert "FSDP: 2 layers (LlamaDecoderLayer) sharded full over 2 processes" in log
    expected, actual = adapter(ddp_run), adapter(fsdp)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-3, atol=5e-4)
    assert [v for _, v in train_losses(fsdp)] == pytest.approx(
        [v for _, v in train_losses(ddp_run)], rel=1e-4
    )
    whole, reference = checkpoint_weights(fsdp), checkpoint_weights(ddp_run)
    assert whole.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(whole[name], reference[name], rtol=1e-3, atol=5e-4)
    rows = pd.read_csv(fsdp.predictions_csv, keep_default_na=False)
    ddp_rows = pd.read_csv(ddp_run.predictions_csv, keep_default_na=False)
    assert len(rows) == 19
    assert rows["prompt"].tolist() == ddp_rows["prompt"].tolist()
    assert rows["predicted_text"].tolist() == ddp_rows["predicted_text"].tolist()


def test_fsdp_full_fine_tuning_stops_resumes_and_saves_the_weights_of_one_process(
    make_run, tiny_model_dir
):
    """Every weight trained and sharded (hybrid: one node, so sharded over both), stopped after
    step 4 and resumed from the gathered weights and optimizer state: the checkpoint is the
    one of a single process with the same global batch."""
    full = {"lora": False, "learning_rate": 1e-3}
    cfg, single = make_run("full_single", batch_size=8, **full)
    train_in_process(cfg)
    environment = {"data_parallel_engine": "fsdp", "fsdp_sharding": "hybrid"}
    cfg, fsdp = make_run("full_fsdp", batch_size=4, environment=environment, **full)

    assert "sharded hybrid over 2 processes" in stop_and_resume(cfg, fsdp)

    whole, reference = checkpoint_weights(fsdp), checkpoint_weights(single)
    assert whole.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(whole[name], reference[name], rtol=1e-3, atol=5e-4)
    from transformers import AutoModelForCausalLM

    backbone = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    changed = sum(not torch.equal(whole[n], w) for n, w in backbone.items() if n in whole)
    assert changed > len(backbone) // 2, "full fine-tuning trains (nearly) every weight"


# --- DeepSpeed ZeRO: our optimizer and scheduler, stepped by its engine ---


def test_deepspeed_zero2_with_lora_stops_resumes_and_trains_the_adapter_of_ddp(make_run, ddp_run):
    """ZeRO-2: optimizer state and gradients partitioned, whole weights on every rank. Stopped
    after step 4 and resumed, it ends with the adapter, merged checkpoint, losses, learning
    rates and validation rows of the uninterrupted DDP run."""
    import deepspeed  # noqa: F401  (installed by make setup: a missing one fails here)

    environment = {"data_parallel_engine": "deepspeed", "deepspeed_zero_stage": 2}
    cfg, zero = make_run("zero2_lora", batch_size=4, environment=environment)
    log = stop_and_resume(cfg, zero)
    assert "DeepSpeed ZeRO stage 2 over 2 processes (AdamW optimizer)" in log
    expected, actual = adapter(ddp_run), adapter(zero)
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-3, atol=5e-4)
    assert [v for _, v in train_losses(zero)] == pytest.approx(
        [v for _, v in train_losses(ddp_run)], rel=1e-4
    )
    charts = zero.read_charts()[0]
    lrs = [(p.step, p.value) for p in charts if p.name == "train/lr"]
    assert lrs == [(p.step, p.value) for p in ddp_run.read_charts()[0] if p.name == "train/lr"]
    whole, reference = checkpoint_weights(zero), checkpoint_weights(ddp_run)
    for name in reference:
        torch.testing.assert_close(whole[name], reference[name], rtol=1e-3, atol=5e-4)
    rows = pd.read_csv(zero.predictions_csv, keep_default_na=False)
    ddp_rows = pd.read_csv(ddp_run.predictions_csv, keep_default_na=False)
    assert rows["predicted_text"].tolist() == ddp_rows["predicted_text"].tolist()


def test_deepspeed_zero3_full_fine_tuning_stops_resumes_and_saves_the_weights_of_one_process(
    make_run, tiny_model_dir
):
    """ZeRO-3 partitions the weights too: validation in lockstep (5 batches over 2 ranks),
    generation with synced_gpus, weights gathered to one checkpoint that plain transformers
    loads; stopped after step 4 and resumed from DeepSpeed's checkpoint in resume/, it ends
    with the weights of a single process with the same global batch."""
    import deepspeed  # noqa: F401  (installed by make setup: a missing one fails here)

    full = {"lora": False, "learning_rate": 1e-3}
    cfg, single = make_run("zero3_single", batch_size=8, **full)
    train_in_process(cfg)
    environment = {"data_parallel_engine": "deepspeed", "deepspeed_zero_stage": 3}
    cfg, zero = make_run("zero3_full", batch_size=4, environment=environment, **full)

    def partitions_moved_into_resume(folder: ExperimentFolder) -> None:
        assert (folder.resume_dir / "deepspeed" / "zero").is_dir()
        assert not list(folder.path.glob(".resume*")), "DeepSpeed's partitions moved into resume/"

    log = stop_and_resume(cfg, zero, on_stop=partitions_moved_into_resume)
    assert "DeepSpeed ZeRO stage 3 over 2 processes" in log

    whole, reference = checkpoint_weights(zero), checkpoint_weights(single)
    assert whole.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(whole[name], reference[name], rtol=1e-3, atol=5e-4)
    assert [v for _, v in train_losses(zero)] == pytest.approx(
        [v for _, v in train_losses(single)], rel=1e-4
    )
    from transformers import AutoModelForCausalLM

    backbone = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    changed = sum(not torch.equal(whole[n], w) for n, w in backbone.items() if n in whole)
    assert changed > len(backbone) // 2, "full fine-tuning trains (nearly) every weight"
    rows = pd.read_csv(zero.predictions_csv, keep_default_na=False)
    single_rows = pd.read_csv(single.predictions_csv, keep_default_na=False)
    assert rows["prompt"].tolist() == single_rows["prompt"].tolist()


@pytest.mark.parametrize(
    "engine, find_unused, finishes",
    [("ddp", False, False), ("ddp", True, True), ("fsdp", False, True), ("deepspeed", False, True)],
)
def test_a_classifier_without_lora_needs_find_unused_parameters_under_ddp_only(
    tmp_path, tiny_model_dir, engine, find_unused, finishes
):
    """Its head replaces the LM head, which then gets no gradient: DDP stops at the second
    step and asks for find_unused_parameters; FSDP and DeepSpeed (ZeRO-3, its default stage)
    reduce whatever gradients there are."""
    from conftest import default_config, pattern_rows

    df = pattern_rows()
    df["label"] = df["output"].str.count(" ")  # the repeat count, 0 to 3
    df.to_csv(tmp_path / "counts.csv", index=False)
    environment = {
        **RUNNABLE["environment"],
        "data_parallel_engine": engine,
        "find_unused_parameters": find_unused,
    }
    cfg = default_config(
        "text_causal_classification_modeling",
        tiny_model_dir,
        tmp_path / "counts.csv",
        tmp_path / "out",
        environment=environment,
        training={"lora": False, "batch_size": 4, "epochs": 1},
    )
    if engine == "deepspeed":
        import deepspeed  # noqa: F401
    timeout = DEEPSPEED_TIMEOUT if engine == "deepspeed" else 110
    result = launch(write_yaml(tmp_path / "cfg.yaml", cfg), timeout=timeout)
    folder = ExperimentFolder(tmp_path / "out")
    if finishes:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert folder.read_status().state == "finished"
        assert (folder.checkpoint_dir / "config.json").is_file()
    else:
        assert folder.read_status().state == "failed"
        assert "find_unused_parameters=True" in folder.logs.read_text()


@pytest.mark.parametrize("engine", ["fsdp", "deepspeed"])
@pytest.mark.parametrize(
    "problem_type", ["text_dpo_modeling", "text_sequence_to_sequence_modeling"]
)
def test_dpo_and_seq2seq_train_with_sharded_weights_and_save_whole_checkpoints(
    tmp_path, tiny_model_dir, problem_type, engine
):
    """With LoRA (their defaults) under FSDP or ZeRO-3: DPO's reference is the LoRA-less
    backbone inside the sharded model; seq2seq generates through the encoder, outside the
    outermost unit's forward. Both validate in lockstep and save."""
    from conftest import default_config

    from llm_studio.models.backbone import auto_model_class

    if problem_type == "text_dpo_modeling":
        rows, model_dir = pd.read_csv(REPO / "examples/data/demo_dpo.csv").head(48), tiny_model_dir
    else:
        from tiny_model import build_tiny_t5

        rows, model_dir = pattern_rows(48), build_tiny_t5(tmp_path / "tiny-t5")
    rows.to_csv(tmp_path / "data.csv", index=False)
    cfg = default_config(
        problem_type,
        model_dir,
        tmp_path / "data.csv",
        tmp_path / "out",
        environment={**RUNNABLE["environment"], "data_parallel_engine": engine},
        training={"batch_size": 4, "epochs": 1, "evaluation_epochs": 1.0},
        prediction=PREDICTION,
    )
    result = launch(write_yaml(tmp_path / "cfg.yaml", cfg), timeout=DEEPSPEED_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = ExperimentFolder(tmp_path / "out")
    sharded = {"fsdp": "sharded full over 2 processes", "deepspeed": "ZeRO stage 3 over 2"}
    assert sharded[engine] in folder.logs.read_text()
    assert len(pd.read_csv(folder.predictions_csv)) == 10  # every validation row (20% of 48)
    loaded = load_cfg(cfg)
    auto_model_class(loaded).from_pretrained(folder.checkpoint_dir)  # plain transformers


@pytest.mark.parametrize("engine", ["ddp", "fsdp", "deepspeed"])
def test_gradient_accumulation_under_each_engine_trains_the_adapter_of_one_process(
    make_run, engine
):
    """grad_accumulation 2: the first batch of each pair only accumulates (DDP no_sync, FSDP
    without reduce-scatter, DeepSpeed before its accumulation boundary); the update after the
    second is the one process's with the same global batch."""
    single_cfg, single = make_run("accumulate_single", batch_size=4, grad_accumulation=2)
    if not single.checkpoint_dir.exists():  # one reference for the three engines
        train_in_process(single_cfg)
    environment = {"data_parallel_engine": engine, "deepspeed_zero_stage": 2}
    cfg, run = make_run(f"accumulate_{engine}", batch_size=2, environment=environment,
                        grad_accumulation=2)  # fmt: skip
    result = launch(cfg, timeout=DEEPSPEED_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    expected, actual = adapter(single), adapter(run)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-3, atol=5e-4)


# --- the pieces, without processes ---
def test_ranks_weighted_losses_average_to_the_global_batchs_token_averaged_loss():
    from llm_studio.training.losses import token_averaged_cross_entropy

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 6, 11, generator=generator)
    labels = torch.randint(0, 11, (8, 6), generator=generator)
    labels[torch.rand(8, 6, generator=generator) < 0.5] = -100  # uneven tokens per row
    batch = {"logits": logits, "labels": labels}

    def weigh(b):
        return int((b["labels"][:, 1:] != -100).sum())

    parts = [Distributed(rank=r, world_size=2).rows_of_rank(batch, weigh) for r in range(2)]
    for rank, (part, _) in enumerate(parts):  # every other row of the global batch
        assert torch.equal(part["labels"], labels[rank::2])
    weighted = [token_averaged_cross_entropy(p["logits"], p["labels"]) * s for p, s in parts]
    global_loss = token_averaged_cross_entropy(logits, labels)
    # DDP averages the ranks' gradients, so the ranks' weighted losses average to the loss.
    torch.testing.assert_close(sum(weighted) / 2, global_loss)
    assert Distributed().rows_of_rank(batch, weigh) == (batch, 1.0), "one process: all, as is"


def test_the_loader_batches_are_global_and_leave_out_a_tail_too_small_for_every_rank(
    tiny_model_dir, tmp_path
):
    from conftest import load_cfg

    from llm_studio.training.loop import build_train_loader

    cfg = load_cfg(tiny_config(tiny_model_dir, tmp_path / "x.csv", tmp_path / "out"))
    cfg.training.batch_size, cfg.training.drop_last_batch = 4, False
    # 17 = 2 x 8 + 1: one row cannot feed two ranks; 18 = 16 + 2 cannot feed four ranks.
    for n, world, batches in ((17, 1, 5), (17, 2, 2), (18, 2, 3), (18, 4, 1), (20, 4, 2)):
        samples = [SimpleNamespace(input_ids=[0] * (1 + i % 5)) for i in range(n)]
        loader = build_train_loader(samples, cfg, list, world)
        sizes = sorted(len(batch) for batch in loader.batch_sampler)
        assert len(loader) == batches, (n, world)
        assert sizes[-1] == 4 * world and all(size >= world for size in sizes), (n, world, sizes)
