"""DPO modeling: the preference losses, the reference model, pairs from rows, and training runs."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import load_cfg, run_cli, series, tiny_config, write_yaml

from llm_studio.data.readers import DataError
from llm_studio.data.splitting import split_and_sample
from llm_studio.data.tokenization import IGNORE_INDEX
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.training.dpo_losses import PREFERENCE_LOSSES, REFERENCE_FREE, AnswerLogps
from llm_studio.training.loop import run_experiment
from llm_studio.training.tasks import build_task

CPU = torch.device("cpu")
WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "fish", "bird", "rain"]


def preference_rows(n: int = 80) -> pd.DataFrame:
    """Separable preferences: the chosen answer always starts with "yes", the rejected "no"."""
    rows = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        rows.append(
            {
                "id": f"r{i}",
                "instruction": f"Is {word} number {i} fine?",
                "output": f"yes {word}",
                "rejected_response": f"no {word}",
                "rejected_instruction": f"Is {word} number {i} bad?",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def preference_csv(tmp_path):
    path = tmp_path / "preferences.csv"
    preference_rows().to_csv(path, index=False)
    return path


def dpo_config(model_dir, csv, output, dataset=None, training=None, **sections) -> dict:
    return tiny_config(
        model_dir,
        csv,
        output,
        problem_type="text_dpo_modeling",
        dataset={"rejected_answer_column": "rejected_response", **(dataset or {})},
        training={"loss_function": "DPOLoss", "beta": 0.2, **(training or {})},
        **sections,
    )


# --- the losses, against the papers' formulas written out ---

POLICY = AnswerLogps(
    chosen=torch.tensor([-4.0, -7.5, -2.0]),
    rejected=torch.tensor([-6.0, -5.0, -9.0]),
    chosen_tokens=torch.tensor([4, 5, 2]),
    rejected_tokens=torch.tensor([3, 5, 6]),
)
REFERENCE = AnswerLogps(
    chosen=torch.tensor([-5.0, -7.0, -3.0]),
    rejected=torch.tensor([-5.5, -6.0, -8.0]),
    chosen_tokens=POLICY.chosen_tokens,
    rejected_tokens=POLICY.rejected_tokens,
)
BETA, GAMMA = 0.3, 0.7


def expected_loss(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-pair losses, chosen rewards, rejected rewards), computed here from the formulas."""
    pc, pr, rc, rr = POLICY.chosen, POLICY.rejected, REFERENCE.chosen, REFERENCE.rejected
    chosen_ratio, rejected_ratio = pc - rc, pr - rr  # [1, -0.5, 1], [-0.5, 1, -1]
    h = chosen_ratio - rejected_ratio
    ratio_rewards = (BETA * chosen_ratio, BETA * rejected_ratio)
    if name == "DPOLoss":
        return (-torch.log(torch.sigmoid(BETA * h)), *ratio_rewards)
    if name == "DPOHingeLoss":
        return (torch.clamp(1 - BETA * h, min=0), *ratio_rewards)
    if name == "DPOIPOLoss":
        return ((h - 1 / (2 * BETA)) ** 2, *ratio_rewards)
    if name == "KTOPairLoss":
        z_chosen = max(chosen_ratio.mean().item(), 0.0)
        z_rejected = max(rejected_ratio.mean().item(), 0.0)
        desirable = 1 - torch.sigmoid(BETA * (chosen_ratio - z_rejected))
        undesirable = 1 - torch.sigmoid(BETA * (z_chosen - rejected_ratio))
        return ((desirable + undesirable) / 2, *ratio_rewards)
    if name == "CPOLoss":
        nll = -pc / POLICY.chosen_tokens
        loss = -torch.log(torch.sigmoid(BETA * (pc - pr))) + nll
        return (loss, BETA * pc, BETA * pr)
    if name == "SimPOLoss":
        chosen = BETA * pc / POLICY.chosen_tokens
        rejected = BETA * pr / POLICY.rejected_tokens
        return (-torch.log(torch.sigmoid(chosen - rejected - GAMMA)), chosen, rejected)
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(PREFERENCE_LOSSES))
def test_each_loss_matches_its_formula(name):
    reference = None if name in REFERENCE_FREE else REFERENCE
    result = PREFERENCE_LOSSES[name](POLICY, reference, BETA, GAMMA)
    losses, chosen_rewards, rejected_rewards = expected_loss(name)
    torch.testing.assert_close(result.losses, losses)
    torch.testing.assert_close(result.chosen_rewards, chosen_rewards)
    torch.testing.assert_close(result.rejected_rewards, rejected_rewards)
    assert result.losses.shape == (3,)
    stats = result.stats()
    margin = chosen_rewards - rejected_rewards
    assert stats["reward_margin"] == pytest.approx(margin.mean().item(), abs=1e-6)
    assert stats["reward_accuracy"] == pytest.approx((margin > 0).float().mean().item())


def test_losses_push_the_chosen_answer_up_and_the_rejected_down_at_the_start():
    start = AnswerLogps(
        POLICY.chosen.clone(), POLICY.rejected.clone(), POLICY.chosen_tokens, POLICY.rejected_tokens
    )  # the reference: where the policy starts
    for name, fn in PREFERENCE_LOSSES.items():
        chosen = POLICY.chosen.clone().requires_grad_(True)
        rejected = POLICY.rejected.clone().requires_grad_(True)
        policy = AnswerLogps(chosen, rejected, POLICY.chosen_tokens, POLICY.rejected_tokens)
        reference = None if name in REFERENCE_FREE else start
        fn(policy, reference, BETA, GAMMA).loss.backward()
        assert (chosen.grad < 0).all(), name
        assert (rejected.grad > 0).all(), name
    # Reference-free losses need no reference; the others refuse to run without one.
    with pytest.raises(ValueError):
        PREFERENCE_LOSSES["DPOLoss"](POLICY, None, BETA, GAMMA)


# --- pairs from rows ---


def test_missing_rejected_answer_column_is_a_clean_data_error(
    tmp_path, tiny_model_dir, preference_csv
):
    data = dpo_config(
        tiny_model_dir,
        preference_csv,
        tmp_path / "out",
        dataset={"rejected_answer_column": "worse_answer"},
    )
    cfg = load_cfg(data)
    with pytest.raises(DataError) as info:
        split_and_sample(cfg, 1, build_task(cfg, CPU))
    assert "'worse_answer'" in str(info.value)
    assert "dataset.rejected_answer_column" in str(info.value)

    result = run_cli("train.py", "-Y", str(write_yaml(tmp_path / "cfg.yaml", data)))
    assert result.returncode != 0
    assert "worse_answer" in result.stderr and "dataset.rejected_answer_column" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert ExperimentFolder(tmp_path / "out").read_status().state == "failed"


def _loaded_task(tmp_path, model_dir, csv, **kwargs):
    cfg = load_cfg(dpo_config(model_dir, csv, tmp_path / "out", **kwargs))
    task = build_task(cfg, CPU)
    backbone = task.load()
    return cfg, task, backbone


def _decode(tokenizer, ids, labels=None) -> str:
    ids = [i for i, lab in zip(ids, labels or ids, strict=True) if lab != IGNORE_INDEX]
    return tokenizer.decode(ids)


def test_rejected_prompt_column_is_the_rejected_sides_prompt(
    tmp_path, tiny_model_dir, preference_csv
):
    df = preference_rows(3)
    cfg = load_cfg(
        dpo_config(
            tiny_model_dir,
            preference_csv,
            tmp_path / "out",
            dataset={"rejected_prompt_column": "rejected_instruction"},
        )
    )
    task = build_task(cfg, CPU)
    pairs = task.build_items(df, "rows")
    assert pairs[1].chosen.prompts == ("Is blue number 1 fine?",)
    assert pairs[1].rejected.prompts == ("Is blue number 1 bad?",)
    assert pairs[1].rejected.answers == ("no blue",)

    from transformers import AutoTokenizer

    task._set_tokenizer(AutoTokenizer.from_pretrained(tiny_model_dir))
    encoded = task.encode_pair(pairs[1])
    rejected_text = _decode(task.tokenizer, encoded.rejected.input_ids)
    assert "Is blue number 1 bad?" in rejected_text and "fine" not in rejected_text
    assert _decode(task.tokenizer, encoded.rejected.input_ids, encoded.rejected.labels) == (
        "no blue</s>"
    )

    # Unset, the rejected answer follows the chosen answer's prompt.
    cfg.dataset.rejected_prompt_column = None
    assert task.build_items(df, "rows")[1].rejected.prompts == ("Is blue number 1 fine?",)
    cfg.dataset.rejected_prompt_column = "missing"
    with pytest.raises(DataError, match="dataset.rejected_prompt_column"):
        task.build_items(df, "rows")


def test_parent_chain_rejected_side_shares_the_earlier_turns(
    tmp_path, tiny_model_dir, preference_csv
):
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "parent_id": [None, "a", "b"],
            "instruction": ["Hi", "Name a color.", "Another one?"],
            "output": ["Hello", "red", "blue"],
            "rejected_response": ["Go away", "fish", "bark"],
        }
    )
    cfg = load_cfg(
        dpo_config(
            tiny_model_dir,
            preference_csv,
            tmp_path / "out",
            dataset={"parent_id_column": "parent_id"},
            tokenizer={"max_length": 256},
        )
    )
    task = build_task(cfg, CPU)
    pair = task.build_items(df, "rows")[2]
    assert pair.chosen.prompts == pair.rejected.prompts == ("Hi", "Name a color.", "Another one?")
    assert pair.chosen.answers == ("Hello", "red", "blue")
    assert pair.rejected.answers == ("Hello", "red", "bark")  # earlier turns: chosen answers

    # Only the last answer is scored: the earlier ones are context both sides share.
    from transformers import AutoTokenizer

    task._set_tokenizer(AutoTokenizer.from_pretrained(tiny_model_dir))
    encoded = task.encode_pair(pair)
    tok = task.tokenizer
    assert _decode(tok, encoded.chosen.input_ids, encoded.chosen.labels) == "blue</s>"
    assert _decode(tok, encoded.rejected.input_ids, encoded.rejected.labels) == "bark</s>"
    prefix = _decode(tok, encoded.rejected.input_ids).rsplit("bark", 1)[0]
    assert _decode(tok, encoded.chosen.input_ids).startswith(prefix)
    assert "Go away" not in prefix and "fish" not in prefix

    # Chain augmentations keep both sides on the same (augmented) context.
    cfg.augmentation.random_parent_probability = 1.0
    cfg.augmentation.skip_parent_probability = 0.5
    samples = task.training_dataset(task.build_items(df, "rows"), seed=3)
    for epoch in range(3):
        samples.set_epoch(epoch)
        for index in range(3):
            aug = samples.conversation(index)
            assert aug.chosen.prompts[:-1] == aug.rejected.prompts[:-1]
            assert aug.chosen.answers[:-1] == aug.rejected.answers[:-1]
            assert len(aug.chosen.prompts) >= 2  # a random parent was put in front
            assert aug.rejected.answers[-1] == ["Go away", "fish", "bark"][index]


def test_personalize_renames_both_sides_and_adds_no_unpaired_turns(tmp_path, tiny_model_dir):
    df = preference_rows(2)
    df.loc[0, "output"] = "yes, I am Open Assistant by LAION"
    df.loc[0, "rejected_response"] = "no, Open Assistant is not here"
    cfg = load_cfg(dpo_config(tiny_model_dir, "unused.csv", tmp_path / "out"))
    task = build_task(cfg, CPU)
    pairs = task.personalize(task.build_items(df, "rows"))
    assert len(pairs) == 2
    assert pairs[0].chosen.answers[-1] == "yes, I am h2oGPT by H2O.ai"
    assert pairs[0].rejected.answers[-1] == "no, h2oGPT is not here"


# --- the reference model ---


def test_lora_reference_is_the_backbone_without_the_adapter(
    tmp_path, tiny_model_dir, preference_csv
):
    from transformers import AutoModelForCausalLM

    cfg, task, backbone = _loaded_task(
        tmp_path, tiny_model_dir, preference_csv, training={"lora": True}
    )
    pairs = task.build_items(preference_rows(4), "rows")
    batch = task.collate([task.encode_pair(p) for p in pairs])
    model = backbone.model
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # a trained-looking adapter: the policy moves away
                param.normal_(std=0.5)
    model.train()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    from llm_studio.training.tasks.dpo import answer_logps

    with torch.no_grad():
        expected = answer_logps(plain, batch)
        policy = answer_logps(model, batch)
    reference = task.reference_logps(model, batch)
    assert task.reference is None, "with LoRA there is no second copy of the model"
    torch.testing.assert_close(reference.chosen, expected.chosen)
    torch.testing.assert_close(reference.rejected, expected.rejected)
    assert not torch.allclose(policy.chosen, expected.chosen)
    assert model.training, "the reference pass leaves the mode as it was"
    assert (expected.chosen_tokens > 0).all()

    # Every loss runs on the model: a finite loss with gradients, and the reward charts.
    for name in PREFERENCE_LOSSES:
        cfg.training.loss_function = name
        model.zero_grad()
        loss, extra = task.loss(model, batch)
        loss.backward()
        assert torch.isfinite(loss), name
        assert set(extra) == {
            "chosen_rewards",
            "rejected_rewards",
            "reward_margin",
            "reward_accuracy",
        }
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    # Without LoRA the reference is a frozen copy of the backbone as loaded.
    cfg, task, backbone = _loaded_task(
        tmp_path, tiny_model_dir, preference_csv, training={"lora": False}
    )
    with torch.no_grad():
        for param in backbone.model.parameters():
            param.add_(0.05)
    reference = task.reference_logps(backbone.model, batch)
    torch.testing.assert_close(reference.chosen, expected.chosen)
    assert not any(p.requires_grad for p in task.reference.parameters())

    # Reference-free losses keep no copy at all.
    cfg, task, _ = _loaded_task(
        tmp_path,
        tiny_model_dir,
        preference_csv,
        training={"lora": False, "loss_function": "SimPOLoss"},
    )
    assert task.reference is None


def test_beta_and_simpo_gamma_settings_reach_the_loss(tmp_path, tiny_model_dir, preference_csv):
    cfg, task, backbone = _loaded_task(
        tmp_path, tiny_model_dir, preference_csv, training={"lora": True}
    )
    model = backbone.model.eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    batch = task.collate([task.encode_pair(p) for p in task.build_items(preference_rows(4), "r")])

    def run(**training):
        for key, value in training.items():
            setattr(cfg.training, key, value)
        with torch.no_grad():
            return task.preference_loss(model, batch)

    small, large = run(loss_function="DPOLoss", beta=0.1), run(beta=0.4)
    assert small.chosen_rewards.abs().sum() > 0
    torch.testing.assert_close(large.chosen_rewards, 4 * small.chosen_rewards)
    torch.testing.assert_close(large.rejected_rewards, 4 * small.rejected_rewards)

    no_margin = run(loss_function="SimPOLoss", beta=2.0, simpo_gamma=0.0)
    margin = run(simpo_gamma=1.5)
    gap = no_margin.chosen_rewards - no_margin.rejected_rewards
    torch.testing.assert_close(no_margin.losses, -F.logsigmoid(gap))
    torch.testing.assert_close(margin.losses, -F.logsigmoid(gap - 1.5))


# --- training runs ---


def test_dpo_learns_to_prefer_the_chosen_answers(tmp_path, tiny_model_dir, preference_csv):
    cfg = load_cfg(
        dpo_config(
            tiny_model_dir,
            preference_csv,
            tmp_path / "out",
            training={
                "epochs": 2,
                "learning_rate": 0.005,
                "schedule": "Constant",
                "lora": True,
                "lora_r": 8,
                "lora_alpha": 32,
                "evaluate_before_training": True,
            },
            prediction={"max_length_inference": 4, "metric": "Perplexity"},
        )
    )
    run_experiment(cfg, ExperimentStatus(state="running"))
    folder = ExperimentFolder(cfg.output_directory)

    # At step 0 the adapter is empty: policy == reference, so every reward is 0.
    for name in ("chosen_rewards", "rejected_rewards", "reward_margin"):
        assert series(folder, f"validation/{name}")[0] == (0, 0.0)
    assert series(folder, "train/chosen_rewards")[0] == (1, 0.0)
    assert series(folder, "validation/loss")[0][1] == pytest.approx(
        -F.logsigmoid(torch.tensor(0.0)).item()
    )

    accuracy = series(folder, "validation/reward_accuracy")
    margin = series(folder, "validation/reward_margin")
    assert accuracy[-1][1] > 0.8, accuracy
    assert margin[-1][1] > 0.5, margin
    losses = series(folder, "validation/loss")
    assert losses[-1][1] < losses[0][1] - 0.2, losses
    names = {p.name for p in folder.read_charts()[0]}
    assert {
        "train/loss",
        "train/chosen_rewards",
        "train/rejected_rewards",
        "train/reward_margin",
        "train/reward_accuracy",
        "validation/Perplexity",
    } <= names

    # The metric and the predictions are about the chosen answers; insights show chosen rows.
    predictions = pd.read_csv(folder.predictions_csv)
    assert predictions["target_text"].str.startswith("yes ").all()
    import json

    insights = json.loads(folder.train_insights.read_text())
    trained = ["".join(p["text"] for p in s if p["kind"] == "trained") for s in insights["samples"]]
    assert all(t.startswith("yes ") for t in trained), trained
    assert (folder.checkpoint_dir / "config.json").is_file() and folder.adapter_dir.is_dir()


def test_default_dpo_yaml_round_trips_and_trains(tmp_path, tiny_model_dir):
    from llm_studio.config.dpo import DPOConfig
    from llm_studio.config.yaml_io import load_config, save_config, to_dict

    path = tmp_path / "default.yaml"
    save_config(DPOConfig(), path)
    loaded, warnings = load_config(path)
    assert warnings == [] and isinstance(loaded, DPOConfig)
    assert to_dict(loaded) == to_dict(DPOConfig())
    assert yaml.safe_load(path.read_text())["training"]["loss_function"] == "DPOLoss"

    csv = tmp_path / "few.csv"
    preference_rows(40).to_csv(csv, index=False)  # the default column names
    out = tmp_path / "run"
    result = run_cli(
        "train.py",
        "-Y",
        str(path),
        *("--llm_backbone", str(tiny_model_dir)),
        *("--output_directory", str(out)),
        *("--dataset.train_dataframe", str(csv)),
        *("--dataset.validation_size", "0.1"),
        *("--architecture.backbone_dtype", "float32"),
        *("--tokenizer.max_length", "32"),
        *("--prediction.max_length_inference", "4"),
        *("--training.batch_size", "8"),
        *("--environment.number_of_workers", "0"),
        *("--environment.seed", "1"),
    )
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    folder = ExperimentFolder(out)
    assert folder.read_status().state == "finished"
    assert yaml.safe_load(folder.cfg_yaml.read_text())["problem_type"] == "text_dpo_modeling"
    names = {p.name for p in folder.read_charts()[0]}
    assert {"train/reward_accuracy", "validation/reward_accuracy", "validation/BLEU"} <= names
    assert (folder.checkpoint_dir / "config.json").is_file()
