"""Config YAML: the guide's defaults load, bad values are refused clearly, saving round-trips."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from llm_studio.config.checks import check_config
from llm_studio.config.problem_types import CausalLMConfig
from llm_studio.config.settings import ConfigError, coerce, spec_of
from llm_studio.config.yaml_io import iter_settings, load_config, save_config
from tests.conftest import GUIDE_YAML, REPO, write_yaml


def guide_data() -> dict:
    return yaml.safe_load(GUIDE_YAML.read_text())


def write_guide(tmp_path: Path, **sections) -> Path:
    """The guide's YAML with some settings replaced (section dicts are merged)."""
    data = guide_data()
    for name, values in sections.items():
        if isinstance(values, dict):
            data[name].update(values)
        else:
            data[name] = values
    return write_yaml(tmp_path / "cfg.yaml", data)


# --- loading the guide's defaults -------------------------------------------------------------


def test_guide_default_yaml_loads_without_warnings():
    cfg, warnings = load_config(GUIDE_YAML)
    assert warnings == []
    assert isinstance(cfg, CausalLMConfig)
    assert cfg.llm_backbone == "h2oai/h2ogpt-4096-llama2-7b"
    assert cfg.dataset.prompt_column == ["instruction"]
    assert cfg.training.lora_r == 4
    assert cfg.environment.gpus == [str(i) for i in range(8)]
    assert cfg.prediction.repetition_penalty == pytest.approx(1.2)


def test_guide_none_strings_become_python_none():
    cfg, _ = load_config(GUIDE_YAML)
    assert cfg.dataset.system_column is None
    assert cfg.dataset.parent_id_column is None
    assert cfg.dataset.validation_dataframe is None
    # "None" is a real choice for the logger, not an unset value.
    assert cfg.logging.logger == "None"


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_top_level_key_warns_and_still_loads(tmp_path):
    path = write_guide(tmp_path, colour_scheme="dark")
    cfg, warnings = load_config(path)
    assert len(warnings) == 1
    assert "colour_scheme" in warnings[0]
    assert cfg.training.lora_r == 4


def test_unknown_section_key_warns_naming_section_and_key(tmp_path):
    path = write_guide(tmp_path, training={"lora_rank": 8, "epochs": 3})
    cfg, warnings = load_config(path)
    assert len(warnings) == 1
    assert "training.lora_rank" in warnings[0]
    # The known settings next to it are still applied.
    assert cfg.training.epochs == 3
    assert cfg.training.lora_r == 4


# --- wrong types and values --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    [
        ("training", "epochs", "abc", ["integer"]),
        ("training", "optimizer", "Adamax", ["Adam", "AdamW", "SGD", "RMSprop"]),
        ("tokenizer", "padding_quantile", 1.5, ["0.0", "1.0"]),
        ("environment", "seed", "x", ["integer"]),
        ("training", "lora", "maybe", ["true", "false"]),
        ("dataset", "data_sample_choice", ["Train", "Test"], ["Train", "Validation"]),
        ("training", "epochs", 2.5, ["integer"]),
    ],
)
def test_wrong_value_raises_config_error_naming_key_value_and_allowed(
    tmp_path, section, key, value, allowed
):
    path = write_guide(tmp_path, **{section: {key: value}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert f"{section}.{key}" in message
    assert str(value) in message
    for word in allowed:
        assert word in message


def test_unknown_problem_type_lists_known_ones(tmp_path):
    path = write_guide(tmp_path, problem_type="text_telepathy_modeling")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "text_sequence_to_sequence_modeling" in str(info.value)
    assert "text_causal_language_modeling" in str(info.value)


def test_missing_and_empty_and_broken_files_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)
    broken = tmp_path / "broken.yaml"
    broken.write_text("training: [epochs: 1\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_config(broken)


# --- save / load round trip --------------------------------------------------------------------


def test_guide_config_round_trips_through_save(tmp_path):
    cfg, _ = load_config(GUIDE_YAML)
    out = tmp_path / "saved" / "cfg.yaml"
    save_config(cfg, out)
    again, warnings = load_config(out)
    assert warnings == []
    assert again == cfg


def test_saved_yaml_keeps_the_guides_key_names(tmp_path):
    cfg, _ = load_config(GUIDE_YAML)
    out = tmp_path / "cfg.yaml"
    save_config(cfg, out)
    written = yaml.safe_load(out.read_text())
    guide = guide_data()
    assert set(guide) <= set(written)
    for name, values in guide.items():
        if isinstance(values, dict):
            assert set(values) <= set(written[name]), name
    assert written["dataset"]["prompt_column"] == ["instruction"]
    assert written["training"]["lora_r"] == 4
    # Unset optional settings are written the way the guide writes them.
    assert written["dataset"]["system_column"] == "None"
    assert written["dataset"]["validation_dataframe"] == "None"
    # No temporary file is left next to the config.
    assert [p.name for p in tmp_path.iterdir()] == ["cfg.yaml"]


def test_non_default_lists_and_optionals_round_trip(tmp_path):
    cfg = CausalLMConfig()
    ds = cfg.dataset
    ds.train_dataframe = "/data/train.csv"
    ds.validation_strategy = "custom"
    ds.validation_dataframe = "/data/val.parquet"
    ds.system_column = "system"
    ds.parent_id_column = "parent_id"
    ds.prompt_column = ["instruction", "input"]
    ds.prompt_column_separator = " ||\n"
    ds.data_sample = 0.25
    ds.data_sample_choice = ["Validation"]
    ds.text_prompt_start = "### User: "
    ds.add_eos_token_to_prompt = False
    cfg.experiment_name = "007"  # looks like a number in YAML
    cfg.llm_backbone = "true"  # looks like a bool in YAML
    cfg.tokenizer.max_length = 1024
    cfg.tokenizer.padding_quantile = 0.9
    cfg.training.lora = False
    cfg.training.freeze_layers = ["embed_tokens", "layers.0"]
    cfg.training.differential_learning_rate_layers = ["lm_head"]
    cfg.training.lora_unfreeze_layers = ["norm"]
    cfg.training.learning_rate = 3e-5
    cfg.training.optimizer = "SGD"
    cfg.prediction.stop_tokens = "<|prompt|>,###"
    cfg.environment.gpus = ["0", "3"]
    cfg.environment.seed = 1234

    out = tmp_path / "cfg.yaml"
    save_config(cfg, out)
    again, warnings = load_config(out)
    assert warnings == []
    assert again == cfg
    assert again.experiment_name == "007"
    assert again.llm_backbone == "true"
    assert again.dataset.prompt_column_separator == " ||\n"
    assert again != CausalLMConfig()


def test_saving_over_an_existing_config_replaces_it(tmp_path):
    out = tmp_path / "cfg.yaml"
    cfg = CausalLMConfig()
    save_config(cfg, out)
    cfg.training.epochs = 7
    save_config(cfg, out)
    again, _ = load_config(out)
    assert again.training.epochs == 7


# --- CLI overrides -----------------------------------------------------------------------------


def test_overrides_of_every_kind_are_applied():
    cfg, warnings = load_config(
        GUIDE_YAML,
        [
            "--training.epochs",
            "2",
            "--training.learning_rate",
            "0.003",
            "--training.lora",
            "false",
            "--dataset.prompt_column",
            "instruction,input",
            "--dataset.answer_column",
            "response",
            "--dataset.parent_id_column",
            "parent_id",
            "--environment.gpus",
            "",
            "--llm_backbone",
            "/models/tiny",
        ],
    )
    assert warnings == []
    assert cfg.training.epochs == 2
    assert cfg.training.learning_rate == pytest.approx(0.003)
    assert cfg.training.lora is False
    assert cfg.dataset.prompt_column == ["instruction", "input"]
    assert cfg.dataset.answer_column == "response"
    assert cfg.dataset.parent_id_column == "parent_id"
    assert cfg.environment.gpus == []
    assert cfg.llm_backbone == "/models/tiny"
    # Settings not overridden keep the YAML's values.
    assert cfg.training.lora_r == 4


def test_override_none_unsets_an_optional(tmp_path):
    path = write_guide(tmp_path, dataset={"parent_id_column": "parent_id"})
    cfg, _ = load_config(path)
    assert cfg.dataset.parent_id_column == "parent_id"
    cfg, _ = load_config(path, ["--dataset.parent_id_column", "None"])
    assert cfg.dataset.parent_id_column is None


def test_override_key_equals_value_form():
    cfg, _ = load_config(
        GUIDE_YAML,
        ["--training.epochs=3", "--tokenizer.padding_quantile=0.5", "--dataset.system_column=sys"],
    )
    assert cfg.training.epochs == 3
    assert cfg.tokenizer.padding_quantile == pytest.approx(0.5)
    assert cfg.dataset.system_column == "sys"


def test_override_values_are_checked_like_yaml_values():
    with pytest.raises(ConfigError) as info:
        load_config(GUIDE_YAML, ["--training.optimizer", "Adamax"])
    assert "training.optimizer" in str(info.value)
    assert "AdamW" in str(info.value)


def test_unknown_override_key_raises_naming_it():
    with pytest.raises(ConfigError) as info:
        load_config(GUIDE_YAML, ["--training.epoch", "2"])
    assert "training.epoch" in str(info.value)


def test_override_without_value_or_dashes_raises():
    with pytest.raises(ConfigError, match="training.epochs"):
        load_config(GUIDE_YAML, ["--training.epochs"])
    with pytest.raises(ConfigError, match="training.epochs"):
        load_config(GUIDE_YAML, ["training.epochs", "2"])


def test_unknown_problem_type_override_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        load_config(GUIDE_YAML, ["--problem_type", "rlhf"])
    assert "rlhf" in str(info.value)
    assert "text_causal_language_modeling" in str(info.value)


# --- cross-field checks ------------------------------------------------------------------------


def runnable_guide_config():
    cfg, _ = load_config(GUIDE_YAML)
    cfg.environment.gpus = []
    cfg.dataset.train_dataframe = "/data/train.csv"
    return cfg


def test_guide_config_on_cpu_has_no_errors():
    result = check_config(runnable_guide_config(), gpu_count=0)
    assert result.errors == []


def test_int4_without_pretrained_weights_is_an_error():
    cfg = runnable_guide_config()
    cfg.architecture.pretrained = False
    errors = check_config(cfg, gpu_count=0).errors
    assert len(errors) == 1
    assert "architecture.backbone_dtype" in errors[0]
    cfg.architecture.backbone_dtype = "float32"
    assert check_config(cfg, gpu_count=0).errors == []


def test_more_gpus_than_exist_is_an_error():
    cfg = runnable_guide_config()
    cfg.environment.gpus = ["0", "1"]
    errors = check_config(cfg, gpu_count=1).errors
    assert len(errors) == 1
    assert "environment.gpus" in errors[0]
    assert check_config(cfg, gpu_count=2).errors == []


def test_custom_validation_without_dataframe_is_an_error():
    cfg = runnable_guide_config()
    cfg.dataset.validation_strategy = "custom"
    errors = check_config(cfg, gpu_count=0).errors
    assert any("dataset.validation_dataframe" in e for e in errors)
    cfg.dataset.validation_dataframe = "/data/val.csv"
    assert check_config(cfg, gpu_count=0).errors == []


def test_missing_train_dataframe_is_an_error():
    cfg = runnable_guide_config()
    cfg.dataset.train_dataframe = ""
    errors = check_config(cfg, gpu_count=0).errors
    assert any("dataset.train_dataframe" in e for e in errors)


# --- the declarations themselves ---------------------------------------------------------------


def all_settings():
    return list(iter_settings(CausalLMConfig()))


def test_every_setting_has_a_tip():
    settings = all_settings()
    assert len(settings) > 60
    missing = [key for key, _, f, _ in settings if spec_of(f) is None or not spec_of(f).tip.strip()]
    assert missing == []


def test_every_default_passes_its_own_checks():
    for key, owner, f, annotation in all_settings():
        default = copy.deepcopy(getattr(owner, f.name))
        assert coerce(key, default, annotation, spec_of(f)) == default, key


def test_every_guide_section_key_is_a_declared_setting():
    declared = {key for key, *_ in all_settings()}
    for name, values in guide_data().items():
        if isinstance(values, dict):
            for key in values:
                assert f"{name}.{key}" in declared
        else:
            assert name in declared


def test_implemented_settings_pass_the_checks():
    from llm_studio.config.checks import check_config

    cfg, _ = load_config(GUIDE_YAML)
    cfg.environment.gpus = []
    cfg.dataset.parent_id_column = "parent_id"
    cfg.dataset.personalize = True
    cfg.dataset.limit_chained_samples = True
    cfg.tokenizer.add_prompt_answer_tokens = True
    cfg.architecture.pretrained_weights = "output/user/previous"
    cfg.augmentation.skip_parent_probability = 0.2
    cfg.augmentation.random_parent_probability = 0.2
    cfg.prediction.metric = "GPT"
    cfg.logging.logger = "TensorBoard"
    cfg.training.save_checkpoint = "best"
    assert check_config(cfg, gpu_count=0).errors == []


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"architecture.backbone_dtype": "int4"},
            "architecture.backbone_dtype: int4 (bitsandbytes) weights cannot be sharded by FSDP",
        ),
        ({"environment.compile_model": True}, "environment.compile_model: not available with FSDP"),
    ],
)
@pytest.mark.parametrize("ask", ["use_fsdp", "data_parallel_engine"])
def test_fsdp_refuses_what_it_cannot_shard(change, message, ask):
    from llm_studio.config.checks import check_config
    from llm_studio.config.sections import data_parallel_engine

    cfg, _ = load_config(GUIDE_YAML)
    cfg.environment.gpus = []
    cfg.architecture.backbone_dtype = "bfloat16"  # the guide's int4 is one of the refusals
    if ask == "use_fsdp":
        cfg.environment.use_fsdp = True  # the guide's key
    else:
        cfg.environment.data_parallel_engine = "fsdp"
    assert data_parallel_engine(cfg.environment) == "fsdp"
    assert check_config(cfg, gpu_count=0).errors == []
    for key, value in change.items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    errors = check_config(cfg, gpu_count=0).errors
    assert len(errors) == 1 and errors[0].startswith(message)


def test_fsdp_on_one_gpu_is_a_warning_and_an_unknown_engine_names_the_choices(tmp_path):
    from llm_studio.config.checks import check_config

    cfg, _ = load_config(GUIDE_YAML)
    cfg.environment.data_parallel_engine = "fsdp"
    cfg.environment.gpus = ["0"]
    assert check_config(cfg, gpu_count=1).warnings == [
        "environment.data_parallel_engine: fsdp on one GPU shards nothing; it runs as ddp"
    ]
    bad = yaml.safe_load(GUIDE_YAML.read_text())
    bad["environment"]["data_parallel_engine"] = "zero"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="environment.data_parallel_engine.*ddp.*fsdp"):
        load_config(str(tmp_path / "bad.yaml"))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"architecture.backbone_dtype": "int8"},
            "architecture.backbone_dtype: int8 (bitsandbytes) weights cannot be sharded by "
            "DeepSpeed ZeRO",
        ),
        (
            {"environment.compile_model": True},
            "environment.compile_model: not available with DeepSpeed ZeRO",
        ),
        (
            {"environment.use_fsdp": True},
            "environment.use_fsdp: true asks for fsdp, but data_parallel_engine is deepspeed",
        ),
    ],
)
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_refuses_quantized_backbones_compile_model_and_use_fsdp(change, message, stage):
    from llm_studio.config.sections import data_parallel_engine

    cfg, _ = load_config(GUIDE_YAML)
    cfg.environment.gpus = []
    cfg.architecture.backbone_dtype = "bfloat16"  # the guide's int4 is one of the refusals
    cfg.environment.data_parallel_engine = "deepspeed"
    cfg.environment.deepspeed_zero_stage = stage
    assert data_parallel_engine(cfg.environment) == "deepspeed"
    assert check_config(cfg, gpu_count=0).errors == []
    for key, value in change.items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    errors = check_config(cfg, gpu_count=0).errors
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_deepspeed_without_the_package_is_refused_with_how_to_install_it(monkeypatch):
    """Checked with find_spec: the UI process checks configs without importing deepspeed."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name)
    )
    cfg, _ = load_config(GUIDE_YAML)
    cfg.architecture.backbone_dtype = "float32"
    cfg.environment.data_parallel_engine = "deepspeed"
    cfg.environment.gpus = ["0", "1"]
    errors = check_config(cfg, gpu_count=2).errors
    assert errors == [
        "environment.data_parallel_engine: deepspeed needs the deepspeed package, which is not "
        "installed; install it with `make setup` (or `DS_BUILD_OPS=0 .venv/bin/pip install "
        "deepspeed==<the version requirements.txt pins>`), or use fsdp"
    ]
    cfg.environment.data_parallel_engine = "ddp"
    assert check_config(cfg, gpu_count=2).errors == [], "only deepspeed needs it"


def test_checking_a_deepspeed_config_imports_neither_torch_nor_deepspeed():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from llm_studio.config.checks import check_config\n"
        "from llm_studio.config.yaml_io import load_config\n"
        f"cfg, _ = load_config({str(GUIDE_YAML)!r})\n"
        "cfg.environment.data_parallel_engine = 'deepspeed'\n"
        "check_config(cfg, gpu_count=0)\n"
        "print(sorted(m for m in ('torch', 'deepspeed') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"


def test_deepspeed_zero_stage_is_2_or_3_and_one_gpu_is_a_warning(tmp_path):
    cfg, _ = load_config(GUIDE_YAML)
    assert cfg.environment.deepspeed_zero_stage == 3
    cfg.architecture.backbone_dtype = "float32"
    cfg.environment.data_parallel_engine = "deepspeed"
    cfg.environment.gpus = ["0"]
    result = check_config(cfg, gpu_count=1)
    assert result.errors == []
    assert result.warnings == [
        "environment.data_parallel_engine: deepspeed on one GPU shards nothing; it runs as ddp"
    ]
    raw = yaml.safe_load(GUIDE_YAML.read_text())
    raw["environment"].update(data_parallel_engine="deepspeed", deepspeed_zero_stage=2)
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(raw))
    assert load_config(str(tmp_path / "two.yaml"))[0].environment.deepspeed_zero_stage == 2
    raw["environment"]["deepspeed_zero_stage"] = 1
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"environment.deepspeed_zero_stage.*\[2, 3\]"):
        load_config(str(tmp_path / "one.yaml"))


def test_classification_checks_reach_the_pre_launch_check():
    """The UI checks a config before it launches: a multi-label classification with a loss that
    picks one class is refused there, not only when train.py builds the task."""
    from llm_studio.config.classification import ClassificationConfig

    cfg = ClassificationConfig()
    cfg.dataset.train_dataframe = "train.csv"
    cfg.dataset.answer_column = ["label_a", "label_b"]
    assert cfg.training.loss_function == "CrossEntropy"
    assert check_config(cfg, gpu_count=0).errors == [
        "training.loss_function: CrossEntropy picks one class per row, but 2 answer columns "
        "mean multi-label; use BinaryCrossEntropy"
    ]
    cfg.training.loss_function = "BinaryCrossEntropy"
    assert check_config(cfg, gpu_count=0).errors == []


def test_number_of_workers_defaults_from_the_cpu_cores_and_a_bigger_machines_cfg_loads(
    tmp_path, monkeypatch
):
    """Issue 11: 4 loader workers on a 2-core machine. The default is half the cores (1 to 8),
    found once in the declaration; YAML, form and docs take it from there."""
    import os

    from llm_studio.config.yaml_io import to_dict

    def machine(cores: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))

    for cores, workers in ((1, 1), (2, 1), (4, 2), (16, 8), (64, 8)):
        machine(cores)
        assert CausalLMConfig().environment.number_of_workers == workers, cores
    machine(32)
    big = CausalLMConfig()
    assert to_dict(big)["environment"]["number_of_workers"] == 8  # what cfg.yaml and the form get
    save_config(big, tmp_path / "cfg.yaml")

    machine(2)
    cfg, warnings = load_config(tmp_path / "cfg.yaml")  # saved on 32 cores, loaded on 2
    assert warnings == [] and cfg.environment.number_of_workers == 8, "the saved value is kept"
    data = yaml.safe_load((tmp_path / "cfg.yaml").read_text())
    del data["environment"]["number_of_workers"]
    cfg, _ = load_config(write_yaml(tmp_path / "without.yaml", data))
    assert cfg.environment.number_of_workers == 1, "a cfg.yaml without the key: this machine's"
    doc = (REPO / "docs" / "settings.md").read_text()
    assert "| `environment.number_of_workers` | half the CPU cores, 1 to 8 |" in doc


def test_backbone_dtype_defaults_to_int4_on_a_gpu_and_float32_on_a_cpu(tmp_path, monkeypatch):
    """A newcomer on a CPU who clicked Run got int4 and a 10-hour ETA: bitsandbytes' CPU 4-bit
    path is far slower than float32. The guide's int4 stays the default where a GPU is."""
    from llm_studio.config import sections

    monkeypatch.setattr(sections, "has_cuda_gpu", lambda: False)
    assert CausalLMConfig().architecture.backbone_dtype == "float32"
    monkeypatch.setattr(sections, "has_cuda_gpu", lambda: True)
    gpu = CausalLMConfig()
    assert gpu.architecture.backbone_dtype == "int4"
    save_config(gpu, tmp_path / "cfg.yaml")
    monkeypatch.setattr(sections, "has_cuda_gpu", lambda: False)
    cfg, _ = load_config(tmp_path / "cfg.yaml")  # saved on a GPU machine, loaded on a CPU one
    assert cfg.architecture.backbone_dtype == "int4", "a saved value is kept"
    doc = (REPO / "docs" / "settings.md").read_text()
    assert (
        "| `architecture.backbone_dtype` | int4 with a GPU, float32 on a CPU-only machine |" in doc
    )
