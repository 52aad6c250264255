"""Model settings, each checked on the tiny Llama loaded through the real backbone path:
`load_backbone(cfg, cpu)` then `prepare_for_training(model, cfg)`."""

from __future__ import annotations

import functools
import json
import os
import shutil

import pytest
import torch
from conftest import load_cfg, pattern_rows, tiny_config
from safetensors.torch import load_file

from llm_studio.models.backbone import count_parameters, load_backbone, prepare_for_training

CPU = torch.device("cpu")
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INPUT_IDS = torch.tensor([[5, 17, 42, 99, 7, 250, 3, 64]])


def make_cfg(model_dir, tmp_path, **sections):
    return load_cfg(tiny_config(model_dir, tmp_path / "train.csv", tmp_path / "out", **sections))


def loaded(model_dir, tmp_path, **sections):
    """The backbone exactly as a run gets it, before LoRA/freezing."""
    cfg = make_cfg(model_dir, tmp_path, **sections)
    return load_backbone(cfg, CPU).model, cfg


def prepared(model_dir, tmp_path, **sections):
    model, cfg = loaded(model_dir, tmp_path, **sections)
    return prepare_for_training(model, cfg)


def trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def lora_layers(model) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A")}


def base_linear_sizes(model_dir, tmp_path) -> int:
    """Sum of in+out features over every linear layer of the blocks (not the head)."""
    model, _ = loaded(model_dir, tmp_path, training={"lora": False})
    return sum(
        m.in_features + m.out_features
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.split(".")[-1] in LINEAR_NAMES
    )


# --- LoRA -----------------------------------------------------------------------------------


def test_lora_trains_a_small_share_and_lora_off_trains_everything(tiny_model_dir, tmp_path):
    full = prepared(tiny_model_dir, tmp_path, training={"lora": False})
    trainable, total = count_parameters(full)
    assert trainable == total

    adapted = prepared(tiny_model_dir, tmp_path, training={"lora": True})
    lora_trainable, lora_total = count_parameters(adapted)
    assert 0 < lora_trainable < 0.1 * lora_total
    assert lora_total == total + lora_trainable, "LoRA adds its adapters next to frozen weights"
    assert all("lora_" in name for name in trainable_names(adapted))


def test_lora_r_sets_the_adapter_rank(tiny_model_dir, tmp_path):
    counts = {}
    for r in (2, 8):
        model = prepared(tiny_model_dir, tmp_path, training={"lora": True, "lora_r": r})
        counts[r] = count_parameters(model)[0]
        ranks = {m.lora_A["default"].out_features for m in lora_layers(model).values()}
        assert ranks == {r}
    assert counts[8] == 4 * counts[2]
    # r * (in + out) per adapted linear layer
    assert counts[2] == 2 * base_linear_sizes(tiny_model_dir, tmp_path)


@pytest.mark.parametrize("alpha, r", [(16, 4), (8, 8), (32, 2)])
def test_lora_alpha_sets_the_adapter_scaling(tiny_model_dir, tmp_path, alpha, r):
    model = prepared(
        tiny_model_dir, tmp_path, training={"lora": True, "lora_r": r, "lora_alpha": alpha}
    )
    layers = lora_layers(model)
    assert layers
    assert {m.scaling["default"] for m in layers.values()} == {alpha / r}


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5])
def test_lora_dropout_sets_the_adapter_dropout(tiny_model_dir, tmp_path, p):
    model = prepared(tiny_model_dir, tmp_path, training={"lora": True, "lora_dropout": p})
    for layer in lora_layers(model).values():
        dropout = layer.lora_dropout["default"]
        if p == 0:
            assert isinstance(dropout, torch.nn.Identity)
        else:
            assert isinstance(dropout, torch.nn.Dropout) and dropout.p == p


def test_lora_target_modules_picks_the_adapted_layers(tiny_model_dir, tmp_path):
    some = prepared(
        tiny_model_dir, tmp_path, training={"lora": True, "lora_target_modules": "q_proj, v_proj"}
    )
    names = lora_layers(some)
    assert {n.split(".")[-1] for n in names} == {"q_proj", "v_proj"}
    assert len(names) == 2 * 2  # two layers

    every = prepared(tiny_model_dir, tmp_path, training={"lora": True, "lora_target_modules": ""})
    names = lora_layers(every)
    assert {n.split(".")[-1] for n in names} == set(LINEAR_NAMES)
    assert len(names) == 2 * len(LINEAR_NAMES)
    assert not any("lm_head" in n for n in names), "the head is not adapted"
    assert count_parameters(every)[0] > count_parameters(some)[0]


@pytest.mark.parametrize("use_dora", [False, True])
def test_use_dora_adds_magnitude_vectors(tiny_model_dir, tmp_path, use_dora):
    model = prepared(tiny_model_dir, tmp_path, training={"lora": True, "use_dora": use_dora})
    magnitudes = [n for n, p in model.named_parameters() if "lora_magnitude_vector" in n]
    if use_dora:
        # one per adapted layer, trained with the adapters
        assert len(magnitudes) == len(lora_layers(model)) == 2 * len(LINEAR_NAMES)
        assert set(magnitudes) <= trainable_names(model)
    else:
        assert magnitudes == []


def test_lora_unfreeze_layers_trains_those_layers_fully(tiny_model_dir, tmp_path):
    default = prepared(tiny_model_dir, tmp_path, training={"lora": True})
    unfrozen = prepared(
        tiny_model_dir,
        tmp_path,
        training={"lora": True, "lora_unfreeze_layers": ["embed_tokens"]},
    )
    extra = trainable_names(unfrozen) - trainable_names(default)
    assert extra == {"base_model.model.model.embed_tokens.weight"}
    assert trainable_names(default) <= trainable_names(unfrozen)
    embed = unfrozen.get_input_embeddings().weight
    assert count_parameters(unfrozen)[0] == count_parameters(default)[0] + embed.numel()


def test_freeze_layers_without_lora_freezes_matching_weights(tiny_model_dir, tmp_path):
    model = prepared(
        tiny_model_dir, tmp_path, training={"lora": False, "freeze_layers": ["layers.0."]}
    )
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all("layers.0." in n for n in frozen)
    assert {n for n, _ in model.named_parameters() if "layers.0." in n} == frozen
    assert "model.layers.1.self_attn.q_proj.weight" in trainable_names(model)
    assert "lm_head.weight" in trainable_names(model)


# --- architecture ---------------------------------------------------------------------------


def _is_checkpointing(model) -> bool:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.is_activation_checkpointing


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("on", [False, True])
def test_gradient_checkpointing_recomputes_activations(tiny_model_dir, tmp_path, lora, on):
    model = prepared(
        tiny_model_dir,
        tmp_path,
        architecture={"gradient_checkpointing": on},
        training={"lora": lora},
    )
    assert _is_checkpointing(model) is on
    # Checkpointed blocks run their forward again in the backward pass: count one activation.
    inner = model.get_base_model() if lora else model
    act = inner.model.layers[0].mlp.act_fn
    calls = []
    original = act.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    act.forward = counting
    model.train()
    out = model(input_ids=INPUT_IDS, labels=INPUT_IDS)
    assert len(calls) == 1
    out.loss.backward()
    assert len(calls) == (2 if on else 1)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable), "every trainable weight gets a gradient"


def test_intermediate_dropout_is_set_and_active_only_in_training(tiny_model_dir, tmp_path):
    model, _ = loaded(
        tiny_model_dir,
        tmp_path,
        architecture={"intermediate_dropout": 0.3},
        training={"lora": False},
    )
    assert model.config.attention_dropout == 0.3
    with torch.no_grad():
        model.train()
        first, second = model(INPUT_IDS).logits, model(INPUT_IDS).logits
        assert not torch.equal(first, second)
        model.eval()
        assert torch.equal(model(INPUT_IDS).logits, model(INPUT_IDS).logits)

    plain, _ = loaded(
        tiny_model_dir,
        tmp_path,
        architecture={"intermediate_dropout": 0.0},
        training={"lora": False},
    )
    assert plain.config.attention_dropout == 0.0
    with torch.no_grad():
        plain.train()
        assert torch.equal(plain(INPUT_IDS).logits, plain(INPUT_IDS).logits)


def test_pretrained_loads_the_saved_weights_and_false_does_not(tiny_model_dir, tmp_path):
    saved = load_file(tiny_model_dir / "model.safetensors")
    pretrained, _ = loaded(tiny_model_dir, tmp_path, architecture={"pretrained": True})
    state = pretrained.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)

    random_init, _ = loaded(tiny_model_dir, tmp_path, architecture={"pretrained": False})
    state = random_init.state_dict()
    assert set(state) >= set(saved), "same architecture, from the backbone's config"
    for key in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"):
        assert state[key].shape == saved[key].shape
        assert not torch.equal(state[key], saved[key])


# --- environment: where the backbone comes from ----------------------------------------------


def _snapshot(cache, repo: str, ref: str, commit: str, source, layers: int) -> None:
    org, name = repo.split("/")
    root = cache / f"models--{org}--{name}"
    snapshot = root / "snapshots" / commit
    shutil.copytree(source, snapshot)
    config = json.loads((snapshot / "config.json").read_text())
    config["num_hidden_layers"] = layers
    (snapshot / "config.json").write_text(json.dumps(config))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)


def test_huggingface_branch_picks_the_revision(tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    _snapshot(cache, "acme/tiny", "main", "a" * 40, tiny_model_dir, layers=2)
    _snapshot(cache, "acme/tiny", "other", "b" * 40, tiny_model_dir, layers=1)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Read once at import; transformers looks them up on huggingface_hub.constants per call.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    # No local copy named acme/tiny may shadow the cache.
    monkeypatch.setenv("H2O_LLM_STUDIO_WORKDIR", str(tmp_path / "workdir"))

    layers = {}
    for branch in ("main", "other"):
        cfg = make_cfg(
            "acme/tiny",
            tmp_path,
            environment={"huggingface_branch": branch},
            training={"lora": False},
        )
        model = load_backbone(cfg, CPU).model
        layers[branch] = (model.config.num_hidden_layers, len(model.model.layers))
    assert layers == {"main": (2, 2), "other": (1, 1)}


def _remote_code_model(tiny_model_dir, dest):
    shutil.copytree(tiny_model_dir, dest)
    config = json.loads((dest / "config.json").read_text())
    config["model_type"] = "acme_llama"
    config["auto_map"] = {
        "AutoConfig": "configuration_acme.AcmeConfig",
        "AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM",
    }
    (dest / "config.json").write_text(json.dumps(config))
    (dest / "configuration_acme.py").write_text(
        "from transformers import LlamaConfig\n\n\n"
        "class AcmeConfig(LlamaConfig):\n"
        '    model_type = "acme_llama"\n'
    )
    (dest / "modeling_acme.py").write_text(
        "from transformers import LlamaForCausalLM\n\n"
        "from .configuration_acme import AcmeConfig\n\n\n"
        "class AcmeForCausalLM(LlamaForCausalLM):\n"
        "    config_class = AcmeConfig\n"
    )
    return dest


def test_trust_remote_code_allows_the_backbones_own_code(tiny_model_dir, tmp_path):
    folder = _remote_code_model(tiny_model_dir, tmp_path / "acme_remote_llama")
    cfg = make_cfg(folder, tmp_path, environment={"trust_remote_code": False})
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_backbone(cfg, CPU)

    cfg = make_cfg(folder, tmp_path, environment={"trust_remote_code": True})
    model = load_backbone(cfg, CPU).model
    assert type(model).__name__ == "AcmeForCausalLM"
    assert model.config.model_type == "acme_llama"


@pytest.mark.parametrize(
    "setting, expected", [("eager", "eager"), ("sdpa", "sdpa"), ("auto", "sdpa")]
)
def test_attention_implementation_is_used_by_the_model(tiny_model_dir, tmp_path, setting, expected):
    model, _ = loaded(tiny_model_dir, tmp_path, training={"attention_implementation": setting})
    assert model.config._attn_implementation == expected


# --- augmentation: NEFTune -------------------------------------------------------------------


def test_neftune_noise_only_in_training_and_removable(tiny_model_dir, tmp_path):
    from llm_studio.models.neftune import add_neftune_noise

    model = prepared(
        tiny_model_dir,
        tmp_path,
        architecture={"intermediate_dropout": 0.0},
        training={"lora": True, "lora_dropout": 0.0},
    )
    alpha = 5.0
    with torch.no_grad():
        model.train()
        clean_train = model(input_ids=INPUT_IDS).logits
        remove_nothing = add_neftune_noise(model, 0.0)  # alpha 0 adds nothing
        assert torch.equal(model(input_ids=INPUT_IDS).logits, clean_train)
        remove_nothing()
        model.eval()
        clean_eval = model(input_ids=INPUT_IDS).logits

        remove = add_neftune_noise(model, alpha)
        seen = []
        hook = model.get_input_embeddings().register_forward_hook(
            lambda module, inputs, output: seen.append(output.detach().clone())
        )
        model.train()
        noisy = model(input_ids=INPUT_IDS).logits
        assert not torch.equal(noisy, clean_train)
        model.eval()
        assert torch.equal(model(input_ids=INPUT_IDS).logits, clean_eval)
        hook.remove()

        # The noise is uniform in +-alpha / sqrt(seq_len * dim).
        noise = seen[0] - seen[1]
        bound = alpha / (INPUT_IDS.shape[1] * noise.shape[-1]) ** 0.5
        assert 0 < noise.abs().max() <= bound

        remove()
        model.train()
        assert torch.equal(model(input_ids=INPUT_IDS).logits, clean_train)


# --- environment: data loading ---------------------------------------------------------------


def _collate_with_pid(samples, **kwargs):
    from llm_studio.data.tokenization import collate_training

    batch = collate_training(samples, **kwargs)
    batch["pid"] = torch.tensor(os.getpid())
    return batch


def test_number_of_workers_loads_in_worker_processes_with_the_same_batches(
    tiny_model_dir, tiny_tokenizer, tmp_path
):
    from llm_studio.data.prompt_format import Conversation, PromptFormat
    from llm_studio.data.tokenization import encode_for_training
    from llm_studio.training.loop import build_train_loader

    batches = {}
    for workers in (0, 2):
        cfg = make_cfg(tiny_model_dir, tmp_path, environment={"number_of_workers": workers})
        fmt = PromptFormat.from_config(cfg.dataset, tiny_tokenizer.eos_token)
        samples = [
            encode_for_training(
                Conversation(None, (row.instruction,), (row.output,)),
                tiny_tokenizer,
                fmt,
                max_length=64,
                mask_prompt_labels=True,
            )
            for row in pattern_rows(40).itertuples()
        ]
        collate = functools.partial(
            _collate_with_pid,
            pad_id=tiny_tokenizer.pad_token_id,
            padding_quantile=1.0,
            max_length=64,
        )
        loader = build_train_loader(samples, cfg, collate)
        assert loader.num_workers == workers
        batches[workers] = list(loader)

    assert len(batches[0]) == len(batches[2]) == 5
    assert {int(b.pop("pid")) for b in batches[0]} == {os.getpid()}
    worker_pids = {int(b.pop("pid")) for b in batches[2]}
    assert os.getpid() not in worker_pids and len(worker_pids) == 2
    for a, b in zip(batches[0], batches[2], strict=True):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
