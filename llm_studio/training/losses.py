"""Causal LM losses, looked up by the name the config uses."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
import torch.nn.functional as F

from llm_studio.config.registries import TEXT_LOSSES
from llm_studio.data.tokenization import IGNORE_INDEX


def aligned_token_losses(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross entropy where logits[:, t] predicts labels[:, t] (a decoder's output),
    and the mask of counted tokens."""
    losses = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(labels.shape)
    return losses, labels != IGNORE_INDEX


def _token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross entropy of next-token prediction, and the mask of counted tokens."""
    return aligned_token_losses(logits[:, :-1, :], labels[:, 1:])


def token_averaged_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every labelled token of the batch weighs the same."""
    losses, mask = _token_losses(logits, labels)
    return (losses * mask).sum() / mask.sum().clamp(min=1)


def sample_averaged_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each sample's mean token loss, then the mean over samples: short answers weigh as much."""
    return per_sample_loss(logits, labels).mean()


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    losses, mask = _token_losses(logits, labels)
    return (losses * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = TEXT_LOSSES.implement(
    {
        "TokenAveragedCrossEntropy": token_averaged_cross_entropy,
        "SampleAveragedCrossEntropy": sample_averaged_cross_entropy,
    }
)


# --- losses on the labelled positions only -----------------------------------------------
# The LM head is the largest matmul of a small model (a 49k vocabulary): the training loss asks
# the model for the logits of the positions that predict a label and no others (transformers'
# boolean `logits_to_keep`), so prompt and padding positions never reach the head.


def predicting_positions(labels: torch.Tensor) -> torch.Tensor:
    """(rows, length) bool: the positions whose next token is a label."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def kept_token_losses(logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor):
    """Cross entropy of each kept position's logits (flattened, in row-major order) against
    the label that follows it."""
    targets = labels[:, 1:][keep[:, :-1]]
    return F.cross_entropy(logits.float(), targets, reduction="none")


def reduce_token_losses(
    losses: torch.Tensor, name: str, sample_of_token: torch.Tensor, samples: int
) -> torch.Tensor:
    """The named loss from per-token losses: their mean (token-averaged), or the mean over
    `samples` samples of each sample's mean (sample-averaged; a sample without labels adds 0)."""
    if name == "TokenAveragedCrossEntropy":
        return losses.sum() / max(len(losses), 1)
    sums = losses.new_zeros(samples).index_add(0, sample_of_token, losses)
    counts = losses.new_zeros(samples).index_add(0, sample_of_token, torch.ones_like(losses))
    return (sums / counts.clamp(min=1)).mean()


def fused_linear_cross_entropy(model, device: torch.device):
    """Liger's fused linear + cross entropy, when liger-kernel is installed and the run is on
    one CUDA GPU: the loss straight from the head's inputs and weight, in chunks, so the
    (tokens x vocabulary) logits never exist at once. None where it cannot apply: on the CPU,
    with several processes (a sharded head lives inside the model's forward), a head that is
    not a plain Linear (adapted, say) or logit soft-capping (Gemma 2)."""
    if device.type != "cuda" or importlib.util.find_spec("liger_kernel") is None:
        return None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return None
    if getattr(model.config, "final_logit_softcapping", None):
        return None
    if type(model.get_output_embeddings()) is not torch.nn.Linear:
        return None
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")


def head_inputs(model, inputs: dict, keep: torch.Tensor) -> tuple[torch.nn.Linear, torch.Tensor]:
    """The output head and the hidden states it receives at the kept positions, from a forward
    in which the head itself computes nothing (its input is swapped for an empty one)."""
    head = model.get_output_embeddings()
    seen = []

    def capture(_module, args):
        seen.append(args[0])
        return (args[0][:0],)

    handle = head.register_forward_pre_hook(capture)
    try:
        model(**inputs, logits_to_keep=keep, use_cache=False)
    finally:
        handle.remove()
    return head, seen[0]
