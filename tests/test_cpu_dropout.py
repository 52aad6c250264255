"""LoRA's input dropout on the CPU (llm_studio/models/cpu_dropout.py): the same dropout as
`nn.Dropout`, drawn from uniform samples because that is twice as fast there."""

from __future__ import annotations

import pytest
import torch
from conftest import load_cfg, tiny_config
from test_throughput import _samples

from llm_studio.models.cpu_dropout import UniformMaskDropout
from llm_studio.training.tasks import build_task


def test_it_drops_a_fraction_p_and_scales_the_rest_like_nn_dropout():
    torch.manual_seed(0)
    x = torch.ones(400, 500, requires_grad=True)
    dropout = UniformMaskDropout(0.05).train()
    y = dropout(x)
    dropped = float((y == 0).float().mean())
    assert dropped == pytest.approx(0.05, abs=0.002)
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.95))
    assert float(y.detach().mean()) == pytest.approx(1.0, abs=0.005), "the expected value is kept"
    y.sum().backward()
    assert torch.equal(x.grad, y.detach()), "the gradient flows through the kept elements only"
    assert torch.equal(dropout.eval()(x), x), "no dropout outside training"


def _tiny_lora(tiny_model_dir, tmp_path, **architecture):
    tmp_path.mkdir(exist_ok=True)
    csv = tmp_path / "rows.csv"
    csv.write_text("instruction,output\na,b\n")
    cfg = load_cfg(
        tiny_config(
            tiny_model_dir,
            csv,
            tmp_path / "out",
            training={"lora_dropout": 0.3},
            architecture=architecture,
        )
    )
    task = build_task(cfg, torch.device("cpu"))
    torch.manual_seed(0)  # the same LoRA A initialisation every time
    model = task.load().model.train()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LoRA B starts at 0, which hides what dropout does to A's input
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return task, model


def test_lora_dropout_on_the_cpu_uses_it_and_still_drops(tiny_model_dir, tmp_path):
    task, model = _tiny_lora(tiny_model_dir, tmp_path)
    dropouts = [m for n, m in model.named_modules() if n.split(".")[-2:-1] == ["lora_dropout"]]
    assert dropouts and all(type(d) is UniformMaskDropout and d.p == 0.3 for d in dropouts)
    batch = task.collate(_samples(task))
    losses = {float(task.loss(model, batch)[0]) for _ in range(3)}
    assert len(losses) == 3, "lora_dropout 0.3 should make each training forward differ"
    model.eval()
    assert len({float(task.loss(model, batch)[0]) for _ in range(2)}) == 1


def test_gradient_checkpointing_redraws_the_same_masks(tiny_model_dir, tmp_path):
    """Recomputing a checkpointed layer must see the masks of its first forward, or the
    gradient would be of another network."""
    grads = []
    for checkpointing in (False, True):
        task, model = _tiny_lora(
            tiny_model_dir, tmp_path / str(checkpointing), gradient_checkpointing=checkpointing
        )
        batch = task.collate(_samples(task))
        torch.manual_seed(5)
        task.loss(model, batch)[0].backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    plain, checkpointed = grads
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-6), name
