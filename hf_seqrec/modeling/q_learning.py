"""The reward-aware objective: SQN's Q-learning head (Xin et al., SIGIR 2020, "Self-Supervised Reinforcement
Learning for Recommender Systems").

SQN trains a second head next to the next-item head on the same sequence encoder. At every position
``t`` the head gives ``Q(s_t, a)`` for every catalogue item ``a``; for the item the user actually chose
next, ``a_t``, it is regressed onto the one-step TD target

    y_t = r_t + gamma * max_a' Q(s_{t+1}, a')        (0 future value where the sequence ends)

where ``r_t`` is the reward of that interaction (a function of its rating, see
``hf_seqrec.data.rewards``) and ``s_{t+1}`` is the encoder's state after it has also read ``a_t``. The TD
loss, ``0.5 * (Q(s_t, a_t) - y_t)^2`` summed over positions, is added to the cross-entropy. The
gradient of the TD term reaches the shared encoder and item table, which is how the rewards shape the
recommendations; recommending still uses the next-item head alone, as in SQN.

Choices, and why:

- Target: the same head, with the gradient stopped at the target (``y_t`` is a constant of the step).
  The paper alternates two heads (double Q-learning) and a target network is the other common choice;
  both keep a second set of weights (or a copy refreshed on a schedule) that a resumed run would have
  to save and restore exactly. With stop-gradient the target is a function of the current weights only,
  so the head is one more module of the model: saved, loaded and resumed with it, nothing else.
- Head: a learned linear map of the hidden state scored against the model's own item vectors,
  ``Q(s, a) = (W h_s + b) . e_a``, instead of a separate ``hidden x num_items`` output layer. It costs
  ``hidden^2`` weights whatever the catalogue size, and it grows with the item table, so ``add_items``
  needs nothing more. ``W`` and ``b`` start at zero: ``Q`` starts at 0, the TD term starts at the size
  of the rewards, and the encoder's first steps are those of the cross-entropy alone.
- Scale (``normalized``, what every run writes since it was introduced): the head reads the hidden state
  scaled to unit length, divides the dot product by ``sqrt(hidden)``, and its TD loss is the Huber loss
  (the squared error up to an error of 1, linear beyond). Without it the objective diverged on a
  pretrained LM (MovieLens-100K, SmolLM2, 576-wide states of length ~40): with Adam every entry of
  ``W`` moves by about the learning rate per step whatever its gradient, so one step moved ``Q`` by
  about ``lr * |h|_1 * |e|_1``, ~10 at lr 1e-3; the bootstrapped targets chased it to ~100 where the
  rewards bound it by 2, and the squared TD error, unbounded, grew with them (training loss ~3,000
  against ~7 for the cross-entropy; NDCG@10 down 60%). The three changes bound, in turn, the state's scale,
  the effect of the width on a step, and the TD term's share of the gradient. A config without the
  key (checkpoints from before it) keeps the raw head, so they load as saved.

This file travels with every checkpoint (a same-folder import of ``modeling_seqrec.py``): it imports only
torch, safetensors and its same-folder modules (file names, label padding, atomic writes).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from .atomic_writes import save_safetensors_atomic
from .checkpoint_files import Q_HEAD_FILE
from .next_item_labels import IGNORE_INDEX

# SQN's discount factor, and the weight of the TD loss next to the cross-entropy (the paper adds them).
DEFAULT_DISCOUNT = 0.5
DEFAULT_WEIGHT = 1.0


def check_q_head_options(q_head: Any) -> None:
    """The rules on ``SeqRecConfig.q_head``; a ``ValueError`` that starts with ``q_head`` says what was expected."""
    if not isinstance(q_head, dict) or not {"discount", "weight"} <= set(q_head):
        raise ValueError(f"q_head: expected a dict with 'discount' and 'weight' (and optionally 'reward'), got {q_head!r}")
    discount, weight = q_head["discount"], q_head["weight"]
    if not _is_number(discount) or not 0.0 <= discount < 1.0:
        raise ValueError(f"q_head: expected a discount in [0, 1), got {discount!r}")
    if not _is_number(weight) or not (weight > 0 and math.isfinite(weight)):
        raise ValueError(f"q_head: expected a positive finite weight, got {weight!r}")
    if not isinstance(q_head.get("normalized", False), bool):
        raise ValueError(f"q_head: expected normalized to be true or false, got {q_head['normalized']!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class QHead(nn.Module):
    """``Q(s, a) = (W h_s + b) . e_a`` for every item vector ``e_a``, and the TD loss that trains it.

    With ``normalized``: ``Q(s, a) = (W h_s / |h_s| + b) . e_a / sqrt(hidden)`` and a Huber TD loss (see the module docstring).
    """

    def __init__(
        self, hidden_size: int, discount: float = DEFAULT_DISCOUNT, weight: float = DEFAULT_WEIGHT, normalized: bool = True,
    ) -> None:
        super().__init__()
        self.projection = nn.Linear(hidden_size, hidden_size)
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)
        self.discount = discount
        self.weight = weight
        self.normalized = normalized
        self.output_scale = 1.0 / math.sqrt(hidden_size) if normalized else 1.0

    def forward(self, hidden_states: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        """``[..., num_items]`` Q-values of every item for each hidden state, in fp32 (also under autocast)."""
        with torch.autocast(device_type=hidden_states.device.type, enabled=False):
            state = hidden_states.float()
            if self.normalized:
                state = nn.functional.normalize(state, dim=-1)
            projected = self.projection(state.to(self.projection.weight.dtype)).float()
            return (projected @ item_vectors.float().T) * self.output_scale

    def loss(
        self,
        hidden_states: torch.Tensor,
        item_vectors: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        rewards: torch.Tensor,
    ) -> torch.Tensor:
        """The weighted TD loss summed over labelled positions (the caller divides by the positions, as for the cross-entropy).

        ``0.5 * error^2``, or with ``normalized`` its Huber form (the same up to an error of 1, ``|error| - 0.5`` beyond).
        """
        q_values = self(hidden_states, item_vectors)
        chosen, targets = td_targets(q_values, attention_mask, labels, rewards, self.discount)
        if self.normalized:
            return self.weight * nn.functional.huber_loss(chosen, targets, reduction="sum", delta=1.0)
        return self.weight * 0.5 * (chosen - targets).pow(2).sum()

    def save(self, directory: str | os.PathLike) -> None:
        """Write the head's weights to ``directory/q_head.safetensors`` (atomically)."""
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        save_safetensors_atomic(state, Path(directory) / Q_HEAD_FILE)

    def load(self, directory: str | os.PathLike) -> None:
        """Read the head's weights back; a checkpoint whose config has a Q head must have the file."""
        path = Path(directory) / Q_HEAD_FILE
        if not path.is_file():
            raise ValueError(f"{directory}: config.json has a q_head (the reward-aware objective) but {Q_HEAD_FILE} is missing")
        self.load_state_dict(load_file(path))


def td_targets(
    q_values: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    rewards: torch.Tensor,
    discount: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Q(s_t, a_t), r_t + discount * max_a' Q(s_{t+1}, a'))`` at every labelled position, in row-major order.

    Args:
        q_values: ``[batch, seq_len, num_items]``, the Q-values at every position.
        attention_mask: ``[batch, seq_len]``, 1 at real positions (right-padded).
        labels: ``[batch, seq_len]``, the chosen next item ``a_t``, ``-100`` where there is none.
        rewards: ``[batch, seq_len]``, the reward of choosing ``labels[t]``.
        discount: gamma.

    Position ``t + 1`` is the next state of ``t`` when it is a real position (it has read ``a_t``); the
    last real position has no next state, and its target is the reward alone. The targets carry no
    gradient: they are constants of the step (stop-gradient; see the module docstring).
    """
    real = attention_mask.bool()
    labelled = (labels != IGNORE_INDEX) & real
    chosen = q_values.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        best = q_values.max(dim=-1).values
        future = torch.zeros_like(best)
        future[:, :-1] = torch.where(real[:, 1:], best[:, 1:], torch.zeros_like(best[:, 1:]))
        targets = rewards.to(best.dtype) + discount * future
    return chosen[labelled], targets[labelled]
