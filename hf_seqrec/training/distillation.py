"""Distillation from a trained hf_seqrec model: its full-catalogue scores as soft targets for the model in training.

A teacher (e.g. a SASRec run) scores every catalogue item at every trained position of the student's
windows; the student's loss mixes its cross-entropy on the true next item with the KL divergence from
the teacher's softmax over the whole catalogue. The teacher must rank the same items on the same
split, so :func:`load_teacher` compares its catalogue and data options with the run's and refuses any
difference by name.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from ..data.collator import IGNORE_INDEX
from ..data.prepare import DataConfig, PreparedData
from ..modeling import SeqRecForNextItem
from .config import ConfigError

TEACHER_RUN_CONFIG = "training_config.yaml"


def load_teacher(teacher_dir: str | Path, prepared: PreparedData, data_options: dict[str, Any], device: torch.device) -> SeqRecForNextItem:
    """The teacher checkpoint, frozen and in eval mode, after checking it was trained on this run's data and split.

    Checked: the data options of its ``training_config.yaml`` (dataset, item file, columns, filters) and its
    item catalogue (the same item ids in the same rows). A difference is a ``ConfigError`` naming it.
    """
    directory = Path(teacher_dir)
    run_config = directory / TEACHER_RUN_CONFIG
    if not run_config.is_file():
        raise ConfigError(
            f"teacher: {directory} has no {TEACHER_RUN_CONFIG}; give the output directory of an hf_seqrec training run, "
            "so its data and split can be checked against this run's"
        )
    teacher_options = yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}
    differing = [
        f"{spec.name} ({teacher_options.get(spec.name)!r} in the teacher, {data_options.get(spec.name)!r} here)"
        for spec in fields(DataConfig)
        if teacher_options.get(spec.name, spec.default) != data_options.get(spec.name)
    ]
    if differing:
        raise ConfigError(f"teacher: {directory} was trained on other data: {'; '.join(differing)}")
    teacher = SeqRecForNextItem.from_pretrained(directory)
    if teacher.item_catalog is None:
        raise ConfigError(f"teacher: {directory} has no item catalogue, so its item rows cannot be matched to this run's")
    ours, theirs = list(prepared.catalog.item_ids), list(teacher.item_catalog.item_ids)
    if ours != theirs:
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        raise ConfigError(
            f"teacher: {directory} ranks another catalogue: {len(theirs)} items against {len(ours)} here, first "
            f"difference at row {first}"
        )
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def distillation_term(
    student: SeqRecForNextItem,
    teacher: SeqRecForNextItem,
    batch: dict[str, torch.Tensor],
    student_hidden: torch.Tensor,
    temperature: float,
    denominator: torch.Tensor | float,
) -> torch.Tensor:
    """``T^2 * KL(teacher || student)`` over the whole catalogue, summed over labelled positions / ``denominator``.

    Scaled by ``T^2`` so its gradients keep their size as the temperature changes (Hinton et al.). The
    student is scored from the hidden states of its own forward pass, the teacher reads the same window.
    """
    labelled = batch["labels"] != IGNORE_INDEX
    with torch.no_grad():
        teacher_hidden = teacher(input_item_ids=batch["input_item_ids"], attention_mask=batch["attention_mask"], return_logits=False).last_hidden_state
        teacher_log_probs = F.log_softmax(teacher.score(teacher_hidden[labelled]).float() / temperature, dim=-1)
    student_log_probs = F.log_softmax(student.score(student_hidden[labelled]).float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="sum")
    return kl * temperature**2 / denominator
