"""train.py trains exactly as a plain `transformers.Trainer` does on the same work.

Given the same samples in the same order, the same seed (so the same LoRA initialisation) and
no dropout (each loop draws its masks from its own random stream), every step's loss and the
trained model agree. So a faster run is the same training, and any difference in the final
loss between the two, on their own orders, is the luck of the draw (bench/bench_hf_trainer.py
prints both over several seeds).
"""

from __future__ import annotations

import pytest
import torch
from conftest import default_config, load_cfg, series

from llm_studio.config.problem_types import PROBLEM_TYPES
from llm_studio.config.yaml_io import to_dict
from llm_studio.data.splitting import split_and_sample
from llm_studio.experiments.folder import ExperimentFolder, ExperimentStatus
from llm_studio.training.loop import run_experiment
from llm_studio.training.tasks import build_task
from llm_studio.training.train_loader import build_train_loader

CAUSAL_LM = "text_causal_language_modeling"


def _trainer_side(cfg, order: list[int]):
    """A plain Trainer on train.py's tokenized samples, fed in `order`; returns the model and
    its per-step losses."""
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    task = build_task(cfg, torch.device("cpu"))
    data = split_and_sample(cfg, cfg.environment.seed, task)
    task._set_tokenizer(AutoTokenizer.from_pretrained(cfg.llm_backbone))
    samples = [task.encode(c) for c in data.train]
    rows = [{"input_ids": samples[i].input_ids, "labels": samples[i].labels} for i in order]

    def collate(batch):  # right-padded to the batch's longest row
        length = max(len(s["input_ids"]) for s in batch)
        out = {
            "input_ids": torch.full((len(batch), length), task.tokenizer.pad_token_id),
            "labels": torch.full((len(batch), length), -100),
            "attention_mask": torch.zeros((len(batch), length), dtype=torch.long),
        }
        for row, s in enumerate(batch):
            n = len(s["input_ids"])
            out["input_ids"][row, :n] = torch.tensor(s["input_ids"])
            out["labels"][row, :n] = torch.tensor(s["labels"])
            out["attention_mask"][row, :n] = 1
        return out

    class InOrder(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(self.train_dataset)

    tr = cfg.training
    torch.manual_seed(cfg.environment.seed)
    model = AutoModelForCausalLM.from_pretrained(cfg.llm_backbone, dtype=torch.float32)
    lora = LoraConfig(
        r=tr.lora_r,
        lora_alpha=tr.lora_alpha,
        lora_dropout=tr.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir=str(cfg.output_directory) + "-trainer",
        per_device_train_batch_size=tr.batch_size,
        num_train_epochs=tr.epochs,
        learning_rate=tr.learning_rate,
        lr_scheduler_type=tr.schedule.lower(),
        weight_decay=tr.weight_decay,
        max_grad_norm=tr.gradient_clip,
        gradient_checkpointing=cfg.architecture.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        dataloader_drop_last=tr.drop_last_batch,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        seed=cfg.environment.seed,
        disable_tqdm=True,
    )
    trainer = InOrder(model=model, args=args, train_dataset=rows, data_collator=collate)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return model.merge_and_unload().eval(), losses, collate(rows[:8])


@pytest.mark.parametrize("grouped", [True, False], ids=["length-grouped", "random-order"])
def test_train_py_and_a_plain_trainer_train_alike_on_the_same_batches(
    tmp_path, tiny_model_dir, pattern_csv, grouped
):
    from transformers import AutoModelForCausalLM

    defaults = to_dict(PROBLEM_TYPES[CAUSAL_LM]())
    cfg = load_cfg(
        default_config(
            CAUSAL_LM,
            tiny_model_dir,
            pattern_csv,
            tmp_path / "out",
            # Only what cannot be aligned across the two loops is changed: dropout masks.
            training={**defaults["training"], "lora_dropout": 0.0, "learning_rate": 0.003}
            | {"length_grouped_batches": grouped},
            environment=defaults["environment"] | {"gpus": [], "seed": 7},  # both sides alike
            architecture=defaults["architecture"] | {"backbone_dtype": "float32"},
        )
    )
    task = build_task(cfg, torch.device("cpu"))
    task.load()
    data = split_and_sample(cfg, cfg.environment.seed, task)
    samples = task.training_dataset(data.train, cfg.environment.seed)
    loader = build_train_loader(samples, cfg, task.collate)
    loader.batch_sampler.set_epoch(0)
    order = [i for batch in loader.batch_sampler.batches() for i in batch]

    status = run_experiment(cfg, ExperimentStatus(state="running"))
    assert status.state == "finished"
    folder = ExperimentFolder(cfg.output_directory)
    ours = [value for _, value in series(folder, "train/loss")]

    theirs_model, theirs, batch = _trainer_side(cfg, order)
    assert len(ours) == len(theirs) == len(order) // cfg.training.batch_size > 3
    assert ours == pytest.approx(theirs, abs=2e-4), "a step's loss differs from the Trainer's"
    assert ours[-1] < ours[0] - 0.05, "the run should have learned something to compare"

    saved = AutoModelForCausalLM.from_pretrained(folder.checkpoint_dir, dtype=torch.float32)
    with torch.no_grad():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        ours_logits = saved.eval()(**inputs).logits
        theirs_logits = theirs_model(**inputs).logits
    assert torch.allclose(ours_logits, theirs_logits, atol=1e-3), (
        (ours_logits - theirs_logits).abs().max()
    )
