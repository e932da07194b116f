"""The levers aimed at the long tail: varied training windows, a narrow item table, cosine scores, dropout on the
residual stream and the final hidden states, and distillation from a trained teacher."""

from __future__ import annotations

import json

import pytest
import torch

from hf_seqrec.data.collator import IGNORE_INDEX, VaryingTrainingWindows, sequence_windows
from hf_seqrec.data.sampling import LengthGroupedSampler
from hf_seqrec.modeling import SeqRecConfig, SeqRecForNextItem
from testing_utils import history_logits, run_finetune

HISTORIES = [list(range(1, n + 1)) for n in (2, 3, 49, 50, 51, 52, 120, 233)]


def _targets_by_user(windows: VaryingTrainingWindows) -> dict[int, list[int]]:
    seen: dict[int, list[int]] = {}
    for row in range(len(windows)):
        user, _ = windows.rows[row]
        labels = [label for label in windows[row]["labels"] if label != IGNORE_INDEX]
        seen.setdefault(user, []).extend(labels)
    return seen


def test_varied_windows_keep_the_fixed_count_and_each_transition_at_most_once():
    windows = VaryingTrainingWindows(HISTORIES, max_len=10, seed=3)
    fixed = [w for items in HISTORIES for w in sequence_windows(items, 10)]
    assert len(windows) == len(fixed)  # same batches per epoch as fixed windows
    for epoch in range(4):
        windows.set_epoch(epoch)
        for row in range(len(windows)):
            window = windows[row]
            assert len(window["input_items"]) == len(window["labels"]) <= 10
            # Consecutive items: each label is the item after its input.
            assert all(label == item + 1 for item, label in zip(window["input_items"], window["labels"]))
        for user, targets in _targets_by_user(windows).items():
            items = windows.sequences[user]
            assert len(targets) == len(set(targets))  # at most once per epoch
            # Only the oldest transitions may be left out, never a recent one.
            assert items[-1] in targets and sorted(targets) == items[len(items) - len(targets) :]


def test_varied_windows_differ_across_epochs_and_repeat_for_the_same_seed_and_epoch():
    first, second = VaryingTrainingWindows(HISTORIES, 10, seed=0), VaryingTrainingWindows(HISTORIES, 10, seed=0)
    cuts = []
    for epoch in range(3):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        rows = [first[i]["input_items"] for i in range(len(first))]
        assert rows == [second[i]["input_items"] for i in range(len(second))]  # what an exact resume relies on
        cuts.append(rows)
    assert cuts[0] != cuts[1] != cuts[2]
    assert first.lengths(1) == [len(first[i]["labels"]) for i in range(len(first))]


def test_length_grouped_sampler_follows_the_lengths_of_each_epoch():
    windows = VaryingTrainingWindows(HISTORIES, 10, seed=0)
    sampler = LengthGroupedSampler(windows.lengths(0), 4, seed=0, lengths_for_epoch=windows.lengths)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        assert sorted(sampler) == list(range(len(windows)))


def test_narrow_item_table_starts_at_the_text_encodings(catalog):
    torch.manual_seed(0)
    full, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12)
    # tiny-llama is 16 wide: with 16 principal axes the narrow table spans the encodings exactly.
    narrow, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, item_embedding_dim=16)
    encodings = full.item_table.vectors()
    assert narrow.item_table.weight.shape == (len(catalog), 16)
    torch.testing.assert_close(narrow.item_table.vectors(), encodings, atol=1e-5, rtol=1e-4)
    # Output vectors are the centred encodings: every score moves by the same h·mean, so rankings agree.
    small, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, item_embedding_dim=4)
    assert small.item_table.weight.shape == (len(catalog), 4)
    assert sum(p.numel() for p in small.item_table.parameters()) < sum(p.numel() for p in full.item_table.parameters())


def test_narrow_cosine_model_saves_loads_and_adds_items(tmp_path, catalog):
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone(
        "tiny-llama", catalog.texts, max_len=12, item_embedding_dim=8, item_scoring="cosine",
        hidden_dropout=0.2, residual_dropout=0.2,
    )
    model.item_catalog = catalog
    with torch.no_grad():
        model.item_table.log_score_scale.fill_(2.0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = SeqRecForNextItem.from_pretrained(tmp_path)
    assert loaded.config.item_embedding_dim == 8 and loaded.config.item_scoring == "cosine"
    torch.testing.assert_close(history_logits(loaded, [1, 2, 3]), history_logits(model.eval(), [1, 2, 3]))
    # Cosine scores are bounded by the learned scale, whatever the vectors' lengths.
    assert history_logits(loaded, [4, 5]).abs().max() <= torch.exp(torch.tensor(2.0)) + 1e-4
    rows = loaded.add_items([{"item_id": "new", "text": "Film number 7 (1987) | Comedy"}])
    assert loaded.item_table.weight.shape == (len(catalog) + 1, 8)
    assert history_logits(loaded, [1, 2]).shape == (len(catalog) + 1,) and rows == [len(catalog)]


def test_cosine_scores_ignore_vector_length(catalog):
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, item_scoring="cosine")
    model.eval()
    before = history_logits(model, [1, 2, 3])
    with torch.no_grad():
        model.item_table.weight[7].mul_(10.0)  # item 7 is not in the history: its input vector is unused
    after = history_logits(model, [1, 2, 3])
    torch.testing.assert_close(after, before)


def test_dropouts_act_in_training_only(catalog):
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12, residual_dropout=0.3, hidden_dropout=0.3)
    inputs = torch.tensor([[1, 2, 3, 4]])
    model.train()
    first = model(inputs, return_logits=True).logits
    second = model(inputs, return_logits=True).logits
    assert not torch.allclose(first, second)
    model.eval()
    torch.testing.assert_close(model(inputs, return_logits=True).logits, model(inputs, return_logits=True).logits)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"item_embedding_dim": 0}, "item_embedding_dim"),
        ({"item_embedding_dim": 8, "tie_item_table": False}, "item_embedding_dim"),
        ({"item_scoring": "euclid"}, "item_scoring"),
        ({"residual_dropout": 1.0}, "residual_dropout"),
    ],
)
def test_bad_lever_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        SeqRecConfig(num_items=5, **options)


def test_residual_dropout_needs_decoder_layers():
    with pytest.raises(ValueError, match="residual_dropout"):
        SeqRecForNextItem.from_backbone("sasrec", num_items=10, max_len=5, residual_dropout=0.1)


@pytest.mark.slow
def test_distillation_trains_from_a_teacher_and_refuses_other_data(tmp_path):
    common = ["--config", "configs/tiny.yaml", "--max_steps", "4", "--eval_max_users", "30", "--bootstrap_samples", "10", "--report_to", "none"]
    teacher = tmp_path / "teacher"
    done = run_finetune(*common, "--backbone", "sasrec", "--output_dir", str(teacher))
    assert done.returncode == 0, done.stderr[-2000:]
    student = tmp_path / "student"
    done = run_finetune(*common, "--vary_windows", "--teacher", str(teacher), "--distill_weight", "0.5", "--output_dir", str(student))
    assert done.returncode == 0, done.stderr[-2000:]
    recorded = (student / "training_config.yaml").read_text()
    assert f"teacher: {teacher}" in recorded and "vary_windows: true" in recorded
    assert json.loads((student / "metrics.json").read_text())["training"]["optimizer_steps"] == 4
    refused = run_finetune(*common, "--k_core", "5", "--teacher", str(teacher), "--output_dir", str(tmp_path / "other"))
    assert refused.returncode != 0 and "k_core" in refused.stderr and "teacher" in refused.stderr
