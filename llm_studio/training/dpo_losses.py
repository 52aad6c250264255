"""Preference losses of the DPO family, looked up by the name `training.loss_function` takes.

Every loss has the same signature::

    loss(policy: AnswerLogps, reference: AnswerLogps | None, beta: float, gamma: float)
        -> PreferenceLoss

`AnswerLogps` carries, per pair, the SUM of the log-probabilities of the labelled answer tokens
of the chosen and of the rejected sequence, and how many tokens each sum covers (SimPO averages
over them; CPO's NLL term too). `reference` is None for the reference-free losses named in
`REFERENCE_FREE` (CPO, SimPO): the task then skips the reference forward pass altogether.
`gamma` is only read by SimPO. The result holds one loss per pair (the task averages them) and
the implicit rewards of both answers, detached, for the charts.

Notation below: for an answer y, rho(y) = log pi(y|x) - log pi_ref(y|x) is its log-ratio to the
reference, y_w the chosen answer, y_l the rejected one, and h = rho(y_w) - rho(y_l).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from llm_studio.config import registries


@dataclass(frozen=True)
class AnswerLogps:
    """Per pair: summed answer-token log-probabilities and the number of tokens summed."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor

    def chosen_mean(self) -> torch.Tensor:
        return self.chosen / self.chosen_tokens.clamp(min=1)

    def rejected_mean(self) -> torch.Tensor:
        return self.rejected / self.rejected_tokens.clamp(min=1)


@dataclass(frozen=True)
class PreferenceLoss:
    """One loss per pair, and the implicit rewards of both answers (detached)."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.losses.mean()

    def stats(self) -> dict[str, float]:
        """The chart values: mean rewards, the mean margin, and how often chosen wins."""
        margin = self.chosen_rewards - self.rejected_rewards
        return {
            "chosen_rewards": self.chosen_rewards.mean().item(),
            "rejected_rewards": self.rejected_rewards.mean().item(),
            "reward_margin": margin.mean().item(),
            "reward_accuracy": (margin > 0).float().mean().item(),
        }


PreferenceLossFn = Callable[[AnswerLogps, AnswerLogps | None, float, float], PreferenceLoss]


def _log_ratios(
    policy: AnswerLogps, reference: AnswerLogps | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if reference is None:
        raise ValueError("this loss compares the policy to a reference model; none was given")
    return policy.chosen - reference.chosen, policy.rejected - reference.rejected


def _with_ratio_rewards(losses, chosen_ratio, rejected_ratio, beta) -> PreferenceLoss:
    """DPO's implicit reward of an answer is beta * rho(y)."""
    return PreferenceLoss(losses, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach())


def dpo_loss(
    policy: AnswerLogps, reference: AnswerLogps | None, beta: float, gamma: float
) -> PreferenceLoss:
    """DPO (Rafailov et al. 2023, arXiv:2305.18290): -log sigmoid(beta * h)."""
    chosen, rejected = _log_ratios(policy, reference)
    losses = -F.logsigmoid(beta * (chosen - rejected))
    return _with_ratio_rewards(losses, chosen, rejected, beta)


def dpo_hinge_loss(
    policy: AnswerLogps, reference: AnswerLogps | None, beta: float, gamma: float
) -> PreferenceLoss:
    """Hinge variant (SLiC-HF, Zhao et al. 2023, arXiv:2305.10425): max(0, 1 - beta * h)."""
    chosen, rejected = _log_ratios(policy, reference)
    losses = torch.relu(1 - beta * (chosen - rejected))
    return _with_ratio_rewards(losses, chosen, rejected, beta)


def dpo_ipo_loss(
    policy: AnswerLogps, reference: AnswerLogps | None, beta: float, gamma: float
) -> PreferenceLoss:
    """IPO (Azar et al. 2023, arXiv:2310.12036, eq. 17): (h - 1 / (2 * beta))^2.

    beta plays the role of the paper's tau. h uses the summed log-probs, as the paper writes
    it (no length averaging), like the other reference-based losses here.
    """
    chosen, rejected = _log_ratios(policy, reference)
    losses = (chosen - rejected - 1 / (2 * beta)) ** 2
    return _with_ratio_rewards(losses, chosen, rejected, beta)


def kto_pair_loss(
    policy: AnswerLogps, reference: AnswerLogps | None, beta: float, gamma: float
) -> PreferenceLoss:
    """KTO on pairs (Ethayarajh et al. 2024, arXiv:2402.01306), chosen desirable, rejected not.

    KTO scores an answer against a reference point z, an estimate of KL(pi || pi_ref). With
    pairs, the chosen answer is measured against z from the batch's rejected answers and the
    rejected one against z from the chosen answers: z = max(0, mean of rho over the batch),
    detached (the paper does not back-propagate through z). Per pair, with both weights 1,

        loss = ((1 - sigmoid(beta * (rho(y_w) - z_l))) + (1 - sigmoid(beta * (z_w - rho(y_l))))) / 2

    i.e. the mean over the pair's two examples, so the batch mean is KTO's mean over examples.
    """
    chosen, rejected = _log_ratios(policy, reference)
    z_chosen = chosen.detach().mean().clamp(min=0)
    z_rejected = rejected.detach().mean().clamp(min=0)
    desirable = 1 - torch.sigmoid(beta * (chosen - z_rejected))
    undesirable = 1 - torch.sigmoid(beta * (z_chosen - rejected))
    losses = (desirable + undesirable) / 2
    return _with_ratio_rewards(losses, chosen, rejected, beta)


def cpo_loss(
    policy: AnswerLogps, reference: AnswerLogps | None, beta: float, gamma: float
) -> PreferenceLoss:
    """CPO (Xu et al. 2024, arXiv:2401.08417): no reference model, plus an NLL term on chosen.

        loss = -log sigmoid(beta * (log pi(y_w|x) - log pi(y_l|x))) + NLL(y_w)

    The preference term uses the summed log-probs; the NLL term is the chosen answer's mean
    per-token negative log-likelihood (the scale of the causal LM loss, so it does not grow
    with the answer's length). Rewards are beta * log pi(y|x).
    """
    losses = -F.logsigmoid(beta * (policy.chosen - policy.rejected)) - policy.chosen_mean()
    return PreferenceLoss(
        losses, (beta * policy.chosen).detach(), (beta * policy.rejected).detach()
    )


def simpo_loss(
    policy: AnswerLogps, reference: AnswerLogps | None, beta: float, gamma: float
) -> PreferenceLoss:
    """SimPO (Meng et al. 2024, arXiv:2405.14734): no reference, length-averaged log-probs.

        loss = -log sigmoid(beta * mean log pi(y_w|x) - beta * mean log pi(y_l|x) - gamma)

    gamma (`training.simpo_gamma`) is the target reward margin itself, as in the paper's
    formula. Rewards are beta * mean log pi(y|x).
    """
    chosen = beta * policy.chosen_mean()
    rejected = beta * policy.rejected_mean()
    losses = -F.logsigmoid(chosen - rejected - gamma)
    return PreferenceLoss(losses, chosen.detach(), rejected.detach())


PREFERENCE_LOSSES: dict[str, PreferenceLossFn] = registries.PREFERENCE_LOSSES.implement(
    {
        "DPOLoss": dpo_loss,
        "DPOHingeLoss": dpo_hinge_loss,
        "DPOIPOLoss": dpo_ipo_loss,
        "KTOPairLoss": kto_pair_loss,
        "CPOLoss": cpo_loss,
        "SimPOLoss": simpo_loss,
    }
)

# Losses that never look at a reference model: no reference forward pass is made for them.
REFERENCE_FREE = frozenset({"CPOLoss", "SimPOLoss"})
