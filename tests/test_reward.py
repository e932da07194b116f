"""The reward-aware objective (SQN): reward rules, ratings from the data to the batch, the TD target, a short run
whose checkpoint loads everywhere, the liked / disliked test metrics, and the benchmark's report."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import pipeline

from hf_seqrec import SeqRecForNextItem
from hf_seqrec.data import DataConfig, prepare_data
from hf_seqrec.data.cold_start_split import hold_out_items
from hf_seqrec.data.collator import IGNORE_INDEX, NextItemCollator, VaryingTrainingWindows, training_windows
from hf_seqrec.data.rewards import RewardRules, RewardSyntaxError
from hf_seqrec.evaluation.ratings import rating_metrics, rating_summary
from hf_seqrec.modeling import SeqRecConfig
from hf_seqrec.modeling.q_learning import QHead, td_targets
from hf_seqrec.training.config import ConfigError, FinetuneConfig
from hf_seqrec.training.reward_objective import check_rated_data, q_head_settings, reward_batch_key, reward_function
from testing_utils import REPO, run_finetune, run_in_fresh_process, script_env

REWARD = "rating>=4:1.0,else:0.2"
NUM_USERS, NUM_ITEMS, PER_USER = 40, 30, 12


def _rating(user: int, item: int) -> float:
    """A rating that depends on user and item, so a misaligned rating shows."""
    return float((3 * user + item) % 5 + 1)


def _interactions(with_ratings: bool = True) -> pd.DataFrame:
    """Users 1..40 with 12 items each; rows shuffled, so only the timestamps give the time order."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, NUM_USERS + 1):
        for step, item in enumerate(rng.choice(np.arange(1, NUM_ITEMS + 1), size=PER_USER, replace=False)):
            rows.append({"user_id": str(user), "item_id": str(item), "timestamp": 1000 * user + step, "rating": _rating(user, int(item))})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)
    return frame if with_ratings else frame.drop(columns="rating")


@pytest.fixture(scope="module")
def rated_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rated") / "interactions.csv"
    _interactions().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def rated(rated_csv):
    return prepare_data(DataConfig(dataset=str(rated_csv), rating_column="rating"))


def _expected_ratings(prepared, user: str, rows) -> list[float]:
    return [_rating(int(user), int(prepared.catalog.item_ids[row])) for row in rows]


# ----------------------------------------------------------------------------- reward rules
@pytest.mark.parametrize(
    "text, ratings, rewards",
    [
        (REWARD, [5, 4, 3.5, 1], [1.0, 1.0, 0.2, 0.2]),
        (" rating <= 2 : -1 , rating == 3 : 0 , else : 1 ", [1, 2, 3, 4], [-1.0, -1.0, 0.0, 1.0]),
        ("rating>2:1,rating>4:5,else:0", [5, 3, 2], [1.0, 1.0, 0.0]),  # ordered: the first rule that holds wins
        ("rating!=3:.5,rating<3:9,else:-2e-1", [3, 1], [-0.2, 0.5]),
        ("else:0.7", [1, 5], [0.7, 0.7]),
    ],
)
def test_reward_rules_map_ratings_in_order(text, ratings, rewards):
    rules = RewardRules.parse(text)
    assert rules.rewards(ratings) == pytest.approx(rewards)
    assert RewardRules.parse(str(rules)) == rules  # the canonical text reads back the same


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "cannot read"),
        ("rating>=4:1.0", "last rule must be 'else:VALUE'"),
        ("else:0.2,rating>=4:1.0", "'else' must come last"),
        ("rating>=4:1,else:0,else:1", "'else' must come last"),
        ("rating=>4:1,else:0", "'rating=>4:1' is not"),
        ("score>=4:1,else:0", "'score>=4:1' is not"),
        ("rating>=4:high,else:0", "is not 'rating OP THRESHOLD:VALUE'"),
        ("rating>=4:1e999,else:0", "not a finite number"),
    ],
)
def test_bad_reward_text_is_refused_quoting_it_and_showing_the_form(text, problem):
    with pytest.raises(RewardSyntaxError, match="rating OP THRESHOLD:VALUE") as caught:
        RewardRules.parse(text)
    assert repr(text) in str(caught.value) and problem in str(caught.value)
    with pytest.raises(ConfigError, match=r"^reward: cannot read .*else:VALUE"):
        FinetuneConfig(backbone="sasrec", reward=text)


def test_reward_options_are_checked():
    with pytest.raises(ConfigError, match="reward_discount"):
        FinetuneConfig(backbone="sasrec", reward=REWARD, reward_discount=1.0)
    with pytest.raises(ConfigError, match="reward_weight"):
        FinetuneConfig(backbone="sasrec", reward=REWARD, reward_weight=0)
    with pytest.raises(ConfigError, match="popularity"):
        FinetuneConfig(backbone="popularity", reward=REWARD)
    with pytest.warns(UserWarning, match="reward_weight, reward_discount"):
        FinetuneConfig(backbone="sasrec", reward_weight=2.0)
    with pytest.raises(ValueError, match="q_head"):
        SeqRecConfig(num_items=5, q_head={"discount": 1.5, "weight": 1.0})
    with pytest.raises(ConfigError, match="reward_objective: expected one of sqn, reward-weighted, got 'reinforce'"):
        FinetuneConfig(backbone="sasrec", reward=REWARD, reward_objective="reinforce")
    with pytest.raises(ConfigError, match=r"^reward: .*non-negative.*'rating<=2:-1,else:1' gives -1, 1"):
        FinetuneConfig(backbone="sasrec", reward="rating<=2:-1,else:1", reward_objective="reward-weighted")
    FinetuneConfig(backbone="sasrec", reward="rating<=2:-1,else:1")  # SQN takes negative rewards
    with pytest.warns(UserWarning, match="reward_weight, reward_discount: they shape SQN's TD loss"):
        FinetuneConfig(backbone="sasrec", reward=REWARD, reward_objective="reward-weighted", reward_weight=0.1)


def test_reward_weighted_objective_has_no_head_and_gives_the_rewards_as_label_weights(rated):
    sqn = FinetuneConfig(backbone="sasrec", reward=REWARD)
    weighted = FinetuneConfig(backbone="sasrec", reward=REWARD, reward_objective="reward-weighted")
    assert q_head_settings(sqn)["normalized"] and q_head_settings(weighted) is None
    windows = training_windows(rated.splits["train"], 8, with_ratings=True)
    rows = [windows[i] for i in range(3)]
    as_rewards = NextItemCollator(max_len=8, reward=reward_function(sqn), reward_key=reward_batch_key(sqn))(rows)
    as_weights = NextItemCollator(max_len=8, reward=reward_function(weighted), reward_key=reward_batch_key(weighted))(rows)
    assert "label_weights" not in as_rewards and "rewards" not in as_weights
    assert torch.equal(as_rewards["rewards"], as_weights["label_weights"])


@pytest.mark.parametrize("loss_chunk_size", [None, 2])
def test_label_weights_weigh_each_positions_cross_entropy(loss_chunk_size):
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone(
        "sasrec", num_items=NUM_ITEMS, max_len=8, backbone_options={"hidden_size": 16, "num_layers": 1},
        loss_chunk_size=loss_chunk_size,
    )
    model.eval()
    items = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    labels = torch.tensor([[2, 3, 4, 5], [6, 7, IGNORE_INDEX, IGNORE_INDEX]])
    plain = model(items, mask, labels=labels).loss
    assert model(items, mask, labels=labels, label_weights=torch.ones(2, 4)).loss.item() == pytest.approx(plain.item(), rel=1e-6)
    # One position at a time (weight 1 there, 0 elsewhere): the six add up to the plain loss, and any weights mix them.
    positions = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    alone = []
    for row, column in positions:
        weights = torch.zeros(2, 4)
        weights[row, column] = 1.0
        alone.append(model(items, mask, labels=labels, label_weights=weights).loss.item())
    assert sum(alone) == pytest.approx(plain.item(), rel=1e-5) and min(alone) > 0
    weights = torch.tensor([[1.0, 0.2, 0.2, 1.0], [0.2, 1.0, 5.0, 5.0]])  # padding's weights are never read
    expected = sum(weights[row, column].item() * value for (row, column), value in zip(positions, alone))
    assert model(items, mask, labels=labels, label_weights=weights).loss.item() == pytest.approx(expected, rel=1e-5)


def test_reward_without_ratings_is_refused_naming_the_option_and_the_column(tmp_path):
    path = tmp_path / "plain.csv"
    _interactions(with_ratings=False).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"^reward: .*no rating column.*--rating_column"):
        FinetuneConfig(dataset=str(path), backbone="sasrec", reward=REWARD)
    # Data that loaded without ratings (whatever the options said) is refused before any training.
    config = FinetuneConfig(dataset=str(path), rating_column="rating", backbone="sasrec", reward=REWARD)
    unrated = prepare_data(DataConfig(dataset=str(path)))
    assert "ratings" not in unrated.splits["train"].column_names
    with pytest.raises(ConfigError, match=r"^reward: .*have no rating column.*--rating_column"):
        check_rated_data(config, unrated)


# ----------------------------------------------------------------------------- ratings from the data to the batch
def test_ratings_follow_items_through_splits_windows_and_cold_start(rated):
    train, test = rated.splits["train"], rated.splits["test"]
    for user, items, ratings in zip(train["user_id"], train["items"], train["ratings"]):
        assert ratings == _expected_ratings(rated, user, items)
    for split in ("validation", "test"):
        rows = rated.splits[split]
        assert rows["target_rating"] == [_expected_ratings(rated, u, [t])[0] for u, t in zip(rows["user_id"], rows["target"])]

    windows = training_windows(train, max_len=4, with_ratings=True)
    assert "label_ratings" not in training_windows(train, max_len=4).column_names  # only when asked for
    for row in windows:
        assert row["label_ratings"] == _expected_ratings(rated, row["user_id"], row["labels"])
    varying = VaryingTrainingWindows(train["items"], max_len=4, seed=1, ratings=train["ratings"])
    users = [user for user, items in zip(train["user_id"], train["items"]) if len(items) >= 2]
    for epoch in (0, 1):
        varying.set_epoch(epoch)
        for index in range(len(varying)):
            row = varying[index]
            labels = [label for label in row["labels"] if label != IGNORE_INDEX]
            assert row["label_ratings"][: len(labels)] == _expected_ratings(rated, users[varying.rows[index][0]], labels)

    held_out, _ = hold_out_items(rated.splits, [0, 5, 7])
    for user, items, ratings in zip(held_out["train"]["user_id"], held_out["train"]["items"], held_out["train"]["ratings"]):
        assert not {0, 5, 7} & set(items) and ratings == _expected_ratings(rated, user, items)
    assert held_out["test"]["target_rating"] == test["target_rating"]


def test_collator_gives_the_reward_of_each_label_and_zero_on_padding():
    rules = RewardRules.parse(REWARD)
    rows = [
        {"input_items": [1, 2, 3, 4], "labels": [2, 3, 4, 5], "label_ratings": [5.0, 1.0, 4.0, 2.0]},
        {"input_items": [7], "labels": [8], "label_ratings": [3.0]},
    ]
    batch = NextItemCollator(max_len=3, reward=rules)(rows)
    assert batch["labels"].tolist() == [[3, 4, 5], [8, IGNORE_INDEX, IGNORE_INDEX]]
    torch.testing.assert_close(batch["rewards"], torch.tensor([[0.2, 1.0, 0.2], [0.2, 0.0, 0.0]]))
    assert "rewards" not in NextItemCollator(max_len=3)(rows)
    with pytest.raises(ValueError, match="label_ratings"):
        NextItemCollator(max_len=3, reward=rules)([{"input_items": [1], "labels": [2]}])


# ----------------------------------------------------------------------------- the TD target
def test_td_target_is_reward_plus_discounted_best_next_q_and_reward_alone_at_the_end():
    q_values = torch.tensor(
        [
            [[1.0, 2.0, 3.0], [4.0, 0.0, 1.0], [0.5, 0.2, 0.1]],
            [[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [9.0, 9.0, 9.0]],  # the last position is padding
        ],
        requires_grad=True,
    )
    attention_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    labels = torch.tensor([[1, 2, 0], [0, 2, IGNORE_INDEX]])
    rewards = torch.tensor([[1.0, 0.2, 1.0], [0.2, 1.0, 0.0]])
    chosen, targets = td_targets(q_values, attention_mask, labels, rewards, discount=0.5)
    assert chosen.tolist() == pytest.approx([2.0, 1.0, 0.5, 2.0, 1.0])
    # 1 + 0.5*4; 0.2 + 0.5*0.5; the row's end: 1 + 0; 0.2 + 0.5*3; next position padding (its 9s unused): 1 + 0.
    assert targets.tolist() == pytest.approx([3.0, 0.45, 1.0, 1.7, 1.0])
    assert chosen.requires_grad and not targets.requires_grad  # stop-gradient on the target


def test_model_adds_the_weighted_td_loss_and_recommends_with_the_next_item_head():
    torch.manual_seed(0)
    model, _ = SeqRecForNextItem.from_backbone(
        "sasrec", num_items=NUM_ITEMS, max_len=8, backbone_options={"hidden_size": 16, "num_layers": 1},
        q_head={"discount": 0.5, "weight": 2.0},
    )
    model.eval()
    with torch.no_grad():
        model.q_head.projection.weight.normal_(std=0.5)
    items = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    labels = torch.tensor([[2, 3, 4, 5], [6, 7, IGNORE_INDEX, IGNORE_INDEX]])
    rewards = torch.tensor([[1.0, 0.2, 0.2, 1.0], [0.2, 1.0, 0.0, 0.0]])
    plain = model(items, mask, labels=labels, return_logits=True)
    rewarded = model(items, mask, labels=labels, rewards=rewards, return_logits=True)
    q_values = model.q_head(plain.last_hidden_state, model.item_table.output_vectors(model.item_table.vectors()))
    chosen, targets = td_targets(q_values, mask, labels, rewards, 0.5)
    expected = 2.0 * 0.5 * (chosen - targets).pow(2).sum() / 6
    assert (rewarded.loss - plain.loss).item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.equal(rewarded.logits, plain.logits)
    with torch.no_grad():
        model.q_head.projection.weight.zero_()
    assert torch.equal(model(items, mask).logits, plain.logits)  # the Q head takes no part in recommending


def test_normalized_q_head_ignores_the_state_scale_and_width_and_caps_the_td_gradient():
    """A pretrained LM's states are ~40 long and 576 wide; the raw head let one Adam step move Q by ~10 and diverged."""
    torch.manual_seed(0)
    item_vectors = torch.randn(NUM_ITEMS, 16)
    hidden = torch.randn(2, 3, 16)
    normalized, raw = QHead(16, normalized=True), QHead(16, normalized=False)
    with torch.no_grad():
        normalized.projection.weight.normal_()
        raw.projection.weight.copy_(normalized.projection.weight)
    assert torch.allclose(normalized(40.0 * hidden, item_vectors), normalized(hidden, item_vectors), atol=1e-5)
    unit = torch.nn.functional.normalize(hidden, dim=-1)
    assert torch.allclose(normalized(hidden, item_vectors), raw(unit, item_vectors) / 4.0, atol=1e-6)  # 1 / sqrt(16)
    assert torch.allclose(raw(40.0 * hidden, item_vectors), 40.0 * raw(hidden, item_vectors), rtol=1e-4, atol=1e-4)  # zero bias

    # The TD loss: half the squared error up to an error of 1, then linear, so a diverging Q cannot swamp the cross-entropy.
    mask, labels = torch.tensor([[1, 0]]), torch.tensor([[1, IGNORE_INDEX]])  # one position, the sequence's end
    states = torch.randn(1, 2, 16)
    for head, error, expected in [(normalized, 0.5, 0.125), (normalized, 10.0, 9.5), (raw, 10.0, 50.0)]:
        chosen = head(states, item_vectors)[0, 0, 1].item()
        rewards = torch.tensor([[chosen - error, 0.0]])  # at the end the target is the reward alone
        assert head.loss(states, item_vectors, mask, labels, rewards).item() == pytest.approx(expected, rel=1e-3)


def test_a_q_head_config_without_normalized_keeps_the_raw_head_it_was_trained_with():
    def head(q_head):
        model, _ = SeqRecForNextItem.from_backbone(
            "sasrec", num_items=NUM_ITEMS, max_len=8, backbone_options={"hidden_size": 16}, q_head=q_head,
        )
        return model.q_head

    assert head({"discount": 0.5, "weight": 1.0}).normalized is False
    assert head({"discount": 0.5, "weight": 1.0, "normalized": True}).normalized is True
    with pytest.raises(ValueError, match="normalized"):
        SeqRecConfig(num_items=5, q_head={"discount": 0.5, "weight": 1.0, "normalized": "yes"})


def test_without_the_objective_a_model_and_its_checkpoint_are_as_before(tmp_path):
    model, _ = SeqRecForNextItem.from_backbone("sasrec", num_items=NUM_ITEMS, max_len=8, backbone_options={"hidden_size": 16})
    assert model.q_head is None and "q_head" not in model.config.to_dict()
    assert not any(name.startswith("q_head") for name in model.state_dict())
    model.save_pretrained(tmp_path)
    assert not (tmp_path / "q_head.safetensors").exists() and "q_head" not in (tmp_path / "config.json").read_text()
    with pytest.raises(ValueError, match="no Q-learning head"):
        model(torch.tensor([[1, 2]]), labels=torch.tensor([[2, 3]]), rewards=torch.ones(1, 2))


# ----------------------------------------------------------------------------- a short run and its checkpoint
@pytest.fixture(scope="module")
def reward_run(rated_csv, tmp_path_factory):
    output = tmp_path_factory.mktemp("reward-run") / "run"
    done = run_finetune(
        "--dataset", str(rated_csv), "--rating_column", "rating", "--backbone", "sasrec", "--hidden_size", "16",
        "--num_layers", "1", "--max_len", "8", "--batch_size", "16", "--max_steps", "6", "--num_epochs", "2",
        "--learning_rate", "0.01", "--bootstrap_samples", "10", "--mixed_precision", "no", "--report_to", "none",
        "--reward", REWARD, "--reward_discount", "0.5", "--vary_windows", "--output_dir", str(output),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def test_short_run_trains_the_q_head_and_reports_by_rating(reward_run, rated):
    config = json.loads((reward_run / "config.json").read_text())
    assert config["q_head"] == {"discount": 0.5, "weight": 1.0, "normalized": True, "reward": REWARD}
    assert (reward_run / "q_head.safetensors").is_file() and (reward_run / "q_learning.py").is_file()
    model = SeqRecForNextItem.from_pretrained(reward_run)
    assert model.q_head.projection.weight.abs().sum() > 0  # trained away from its zero start

    ranks = json.loads((reward_run / "test_ranks.json").read_text())
    test = rated.splits["test"]
    assert ranks["user_ids"] == test["user_id"] and ranks["target_ratings"] == test["target_rating"]
    metrics = json.loads((reward_run / "metrics.json").read_text())
    by_rating = metrics["test_by_rating"]
    liked = [rank for rank, rating in zip(ranks["ranks"], ranks["target_ratings"]) if rating >= 4]
    assert by_rating["n_test_users_liked"] == len(liked)
    assert by_rating["test_liked"]["hr@10"] == pytest.approx(np.mean(np.asarray(liked) <= 10))
    assert len(by_rating["disliked_hr@10_interval"]) == 2
    card = (reward_run / "README.md").read_text()
    assert "By the rating of the test target" in card  # the model card shows it, and the objective it was trained with
    assert f"objective: the cross-entropy plus SQN's TD loss (a Q-learning head on the same encoder; rewards `{REWARD}`" in card


def test_reward_weighted_run_trains_without_a_head_and_reports_by_rating(rated_csv, tmp_path):
    output = tmp_path / "weighted"
    done = run_finetune(
        "--dataset", str(rated_csv), "--rating_column", "rating", "--backbone", "sasrec", "--hidden_size", "16",
        "--num_layers", "1", "--max_len", "8", "--batch_size", "16", "--max_steps", "4", "--num_epochs", "1",
        "--bootstrap_samples", "10", "--mixed_precision", "no", "--report_to", "none",
        "--reward", REWARD, "--reward_objective", "reward-weighted", "--output_dir", str(output),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "q_head" not in json.loads((output / "config.json").read_text()) and not (output / "q_head.safetensors").exists()
    recorded = yaml.safe_load((output / "training_config.yaml").read_text())
    assert (recorded["reward"], recorded["reward_objective"]) == (REWARD, "reward-weighted")
    assert "test_liked" in json.loads((output / "metrics.json").read_text())["test_by_rating"]
    assert "objective: the cross-entropy of each position weighted by its target's reward" in (output / "README.md").read_text()
    recommend = pipeline("next-item", model=str(output))
    assert len(recommend({"history": ["3", "17"]}, top_k=5)) == 5


def test_checkpoint_round_trips_through_from_pretrained_pipeline_and_remote_code(reward_run, tmp_path):
    model = SeqRecForNextItem.from_pretrained(reward_run)
    history = [3, 17, 9, 22]
    logits = model(torch.tensor([history]), return_logits=True).logits[0]

    recommend = pipeline("next-item", model=str(reward_run))
    ids = [model.item_catalog.item_ids[row] for row in history]
    result = recommend({"history": ids}, top_k=NUM_ITEMS, exclude_seen=False)
    scores = {r["item_id"]: r["score"] for r in result}
    assert [scores[item_id] for item_id in model.item_catalog.item_ids] == pytest.approx(logits.tolist(), abs=1e-6)

    script = textwrap.dedent(
        f"""
        import json, sys, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(reward_run)!r}, trust_remote_code=True)
        logits = model(torch.tensor([{history}]), return_logits=True).logits[0]
        print("RESULT" + json.dumps({{"logits": logits.tolist(), "q_head": type(model.q_head).__module__,
              "hf_seqrec": sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec")}}))
        """
    )
    out = run_in_fresh_process(script, tmp_path, base_env=script_env(), PYTHONPATH="")
    assert out["hf_seqrec"] == [] and out["q_head"].startswith("transformers_modules.")
    assert torch.equal(torch.tensor(out["logits"]), logits)


# ----------------------------------------------------------------------------- liked / disliked metrics
def test_liked_and_disliked_metrics_on_hand_made_ranks():
    ranks = [1, 3, 12, 2, 50, 8]
    ratings = [5, 4, 4, 1, 2, 3]
    result = rating_metrics(ranks, ratings, n_bootstrap=200)
    assert (result["n_test_users_liked"], result["n_test_users_disliked"]) == (3, 2)
    assert result["test_liked"]["hr@10"] == pytest.approx(2 / 3)
    assert result["test_liked"]["ndcg@10"] == pytest.approx((1.0 + 0.5) / 3)  # ranks 1 and 3: gains 1 and 1/log2(4)
    assert result["disliked_hr@10"] == pytest.approx(0.5) == result["test_disliked"]["hr@10"]
    low, high = result["disliked_hr@10_interval"]
    assert 0.0 <= low <= 0.5 <= high <= 1.0
    assert "disliked (<= 2, 2 users) in the top 10: 0.5000" in rating_summary(result)
    none_disliked = rating_metrics([1, 4], [5, 3], n_bootstrap=0)
    assert none_disliked["test_disliked"] is None and none_disliked["disliked_hr@10"] is None
    assert "in the top 10: none" in rating_summary(none_disliked)


# ----------------------------------------------------------------------------- the benchmark's report
def _benchmark_row(model: str, objective: str, seed: int, ranks: list[int], ratings: list[float]) -> dict:
    hits = np.asarray(ranks) <= 10
    liked, disliked = np.asarray(ratings) >= 4, np.asarray(ratings) <= 2
    return {
        "model": model, "objective": objective, "seed": seed, "ndcg@10": 0.1, "hr@10": float(hits.mean()),
        "liked_hr@10": float(hits[liked].mean()), "liked_ndcg@10": 0.1, "disliked_hr@10": float(hits[disliked].mean()),
        "intervals": {"ndcg@10": [0.05, 0.15], "liked_hr@10": [0.0, 1.0], "disliked_hr@10": [0.0, 1.0]},
        "n_liked": int(liked.sum()), "n_disliked": int(disliked.sum()), "epochs_run": 3, "best_epoch": 2, "train_seconds": 12.0,
        "run_dir": f"runs/reward/{model}-{objective}-seed{seed}", "command": f"python scripts/finetune.py --seed {seed}",
        "test_ranks": {"user_ids": [str(u) for u in range(len(ranks))], "ranks": ranks, "target_ratings": ratings},
    }


def test_benchmark_pairs_runs_by_user_and_renders_its_report(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import reward

    ratings = [5.0, 4.0, 1.0, 2.0, 3.0, 5.0]
    rows = []
    for seed in (0, 1):
        rows.append(_benchmark_row("sasrec", "cross-entropy", seed, [20, 30, 1, 2, 5, 40], ratings))
        rows.append(_benchmark_row("sasrec", "sqn", seed, [1, 2, 50, 60, 5, 3], ratings))
    rows.append(_benchmark_row("smollm2-lora", "cross-entropy", 0, [1, 1, 1, 1, 1, 1], ratings))
    rows = reward.merge_rows([], rows)
    assert [(r["model"], r["objective"], r["seed"]) for r in rows][:3] == [("sasrec", "cross-entropy", 0), ("sasrec", "cross-entropy", 1), ("sasrec", "sqn", 0)]

    results = reward.assemble(rows, [0, 1, 2], quick=False, argv=["--models", "sasrec"])
    tests = {(t["model"], t["metric"]): t for t in results["paired_tests"]}
    liked = tests[("sasrec", "liked_hr@10")]
    # Liked users 0, 1, 5: every one a miss without the objective and a hit with it, in both seeds.
    assert liked["computed"] and liked["n_users"] == 3 and liked["n_pairs"] == 6 and liked["mean_difference"] == pytest.approx(1.0)
    assert tests[("sasrec", "disliked_hr@10")]["mean_difference"] == pytest.approx(-1.0)
    assert tests[("sasrec", "ndcg@10")]["n_users"] == 6
    assert not tests[("smollm2-lora", "ndcg@10")]["computed"]

    markdown = reward.render_markdown(results)
    assert "| sasrec | sqn | 2 (0, 1) |" in markdown and "liked HR@10" in markdown and "disliked in top 10" in markdown
    assert "| sasrec | sqn | liked_hr@10 | 2 (0, 1) | 3 | 6 | 0.0000 | 1.0000 | +1.0000" in markdown
    assert "sqn-w0.1 | liked_hr@10" not in markdown  # a variant without rows has no paired test
    assert "`sasrec` / `sqn-w0.1`: seeds 0, 1, 2 not run yet" in markdown
    assert "`smollm2-lora` / `sqn`: seeds 0, 1, 2 not run yet" in markdown
    assert "python scripts/finetune.py --seed 1" in markdown and results["machine"]

    command = reward.run_command("sasrec", "sqn", 0, Path("/tmp/run"), quick=False)
    assert command[command.index("--reward") + 1] == REWARD and "configs/sasrec.yaml" in command[command.index("--config") + 1]
    assert "--reward" not in reward.run_command("smollm2-lora", "cross-entropy", 0, Path("/tmp/run"), quick=False)


def test_benchmark_reuses_a_finished_run_only_when_its_configuration_matches(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import reward

    from hf_seqrec.training.config import config_from_args

    run_dir = tmp_path / "sasrec-sqn-seed0"
    run_dir.mkdir()
    command = reward.run_command("sasrec", "sqn", 0, run_dir, quick=False)
    (run_dir / "training_config.yaml").write_text(config_from_args(command[2:]).to_yaml())
    (run_dir / "metrics.json").write_text("{}")
    assert reward.finished_run_matches(command, run_dir)
    assert not reward.finished_run_matches(reward.run_command("sasrec", "cross-entropy", 0, run_dir, quick=False), run_dir)
    # Same options, but a Q-learning head from before it read a unit-length state: not the objective as it now is.
    q_head = {"discount": 0.5, "weight": 1.0, "reward": "rating>=4:1.0,else:0.2"}
    (run_dir / "config.json").write_text(json.dumps({"q_head": q_head}))
    assert not reward.q_head_matches(command, run_dir)
    (run_dir / "config.json").write_text(json.dumps({"q_head": {**q_head, "normalized": True}}))
    assert reward.q_head_matches(command, run_dir)


# ----------------------------------------------------------------------------- cross-entropy rows from the quality benchmark
def _quality_run(reward, run_dir: Path, seed: int, *, rated: bool, **changed) -> Path:
    """A finished run directory as benchmarks/quality.py leaves it (no training): its config, metrics and test ranks.

    ``changed``: options that make its configuration differ from the reward benchmark's cross-entropy run.
    """
    from hf_seqrec.training.config import config_from_args

    run_dir.mkdir(parents=True)
    command = reward.run_command("sasrec", "cross-entropy", seed, run_dir, quick=False)
    command += [part for key, value in changed.items() for part in (f"--{key}", str(value))]
    (run_dir / "training_config.yaml").write_text(config_from_args(command[2:]).to_yaml())
    ranks, ratings = [1, 12, 3], [5.0, 1.0, 4.0]
    metrics = {"test": {"ndcg@10": 0.5, "hr@10": 2 / 3, "n_users": 3, "intervals": {}}, "validation": {},
               "training": {"epochs_run": 4, "best_epoch": 3, "train_seconds": 9.0}}
    saved = {"split": "test", "rank_base": 1, "n_users": 3, "ndcg@10": 0.5, "user_ids": ["1", "2", "3"], "ranks": ranks,
             "target_train_counts": [3, 2, 1]}
    if rated:
        metrics["test_by_rating"] = rating_metrics(ranks, ratings, n_bootstrap=0)
        saved["target_ratings"] = ratings
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "test_ranks.json").write_text(json.dumps(saved))
    return run_dir


def _fake_evaluate_checkpoint(calls: list[list[str]], ranks: list[int] | None = None):
    """Stands in for run_logged: writes what scripts/evaluate_checkpoint.py --output --ranks_output writes (ratings included)."""

    def run(command, log_path, label):
        calls.append(command)
        option = {command[i]: command[i + 1] for i in range(2, len(command) - 1, 2)}
        run_dir = Path(option["--model"])
        saved = json.loads((run_dir / "test_ranks.json").read_text())
        saved["ranks"] = ranks or saved["ranks"]
        saved["target_ratings"] = [5.0, 1.0, 4.0]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        metrics = {"test": metrics["test"], "test_by_rating": rating_metrics(saved["ranks"], saved["target_ratings"], n_bootstrap=0),
                   "model": option["--model"]}
        Path(option["--output"]).write_text(json.dumps(metrics))
        Path(option["--ranks_output"]).write_text(json.dumps(saved))
        return 1.0

    return run


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file()}


def test_quality_and_reward_benchmarks_name_and_configure_the_shared_models_alike(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import quality
    import reward

    for model, config_file in reward.MODELS.items():
        assert quality.MODELS[model] == (config_file, {})  # the config file as it is, nothing added
        run_dir = Path("/tmp/runs") / f"{model}-seed0"
        assert quality.model_command(model, 0, run_dir, False, {}) == reward.run_command(model, "cross-entropy", 0, run_dir, quick=False)


def test_cross_entropy_row_comes_from_a_matching_quality_run_reevaluated_outside_it(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import reward

    quality_dir, runs_dir = tmp_path / "quality", tmp_path / "reward"
    run = _quality_run(reward, quality_dir / "sasrec-seed0", 0, rated=False)
    before = _snapshot(quality_dir)
    calls: list[list[str]] = []
    monkeypatch.setattr(reward, "run_logged", _fake_evaluate_checkpoint(calls))
    row = reward.quality_run_row("sasrec", 0, quality_dir, runs_dir, quick=False, reuse_finished=False)

    assert _snapshot(quality_dir) == before  # the quality run's files are left as they are
    [command] = calls
    option = {command[i]: command[i + 1] for i in range(2, len(command) - 1, 2)}
    assert command[1].endswith("scripts/evaluate_checkpoint.py") and option["--model"] == str(run)
    recorded = yaml.safe_load((run / "training_config.yaml").read_text())  # the run's own test settings
    assert option["--split"] == "test" and "--max_users" not in option  # eval_max_users: none
    assert (option["--batch_size"], option["--bootstrap_samples"]) == (str(recorded["eval_batch_size"]), str(recorded["bootstrap_samples"]))
    assert Path(option["--ranks_output"]) == runs_dir / "reevaluated" / "sasrec-seed0" / "test_ranks.json"
    assert row["objective"] == "cross-entropy" and row["seed"] == 0 and row["reused"] and row["wall_seconds"] is None
    assert row["reevaluated"]["command"] == reward.shlex.join(reward.relative_command(command))
    assert row["reevaluated"]["ranks_match_run"] is True
    assert row["test_ranks"]["target_ratings"] == [5.0, 1.0, 4.0] and row["n_liked"] == 2 and row["liked_hr@10"] == 1.0
    assert row["epochs_run"] == 4 and row["run_dir"] == str(run)  # training facts from the quality run itself
    markdown = reward.render_markdown(reward.assemble([row], [0], quick=False, argv=[]))
    assert "re-evaluated: `" + row["reevaluated"]["command"] + "`" in markdown

    # --reuse_finished: the re-evaluation made after the run finished is taken as it is.
    again = reward.quality_run_row("sasrec", 0, quality_dir, runs_dir, quick=False, reuse_finished=True)
    assert len(calls) == 1 and again["reevaluated"]["wall_seconds"] is None and again["test_ranks"] == row["test_ranks"]


def test_a_reevaluation_that_ranks_differently_is_recorded(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import reward

    _quality_run(reward, tmp_path / "quality" / "sasrec-seed0", 0, rated=False)
    monkeypatch.setattr(reward, "run_logged", _fake_evaluate_checkpoint([], ranks=[2, 12, 3]))
    row = reward.quality_run_row("sasrec", 0, tmp_path / "quality", tmp_path / "reward", quick=False, reuse_finished=False)
    assert row["reevaluated"]["ranks_match_run"] is False and row["test_ranks"]["ranks"] == [2, 12, 3]


def test_only_a_matching_quality_run_gives_the_cross_entropy_row(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import reward

    quality_dir, runs_dir = tmp_path / "quality", tmp_path / "reward"
    _quality_run(reward, quality_dir / "sasrec-seed0", 0, rated=True)  # recorded its ratings: nothing to re-evaluate
    _quality_run(reward, quality_dir / "sasrec-seed1", 1, rated=False, learning_rate=0.5)  # another configuration
    calls: list[list[str]] = []
    monkeypatch.setattr(reward, "run_logged", _fake_evaluate_checkpoint(calls))
    trained: list[tuple[str, str, int]] = []

    def run_one(model, objective, seed, runs_dir, quick, reuse_finished):
        trained.append((model, objective, seed))
        return {"model": model, "objective": objective, "seed": seed}

    monkeypatch.setattr(reward, "run_one", run_one)
    args = reward.parse_args(["--cross_entropy_runs_dir", str(quality_dir)])
    row = reward.row_for("sasrec", "cross-entropy", 0, args, runs_dir)
    assert row["reused"] and row["reevaluated"] is None and row["test_ranks"]["target_ratings"] == [5.0, 1.0, 4.0]
    assert calls == [] and trained == []
    reward.row_for("sasrec", "cross-entropy", 1, args, runs_dir)  # configuration differs: trained by this benchmark
    reward.row_for("sasrec", "cross-entropy", 2, args, runs_dir)  # no such run
    reward.row_for("sasrec", "sqn", 0, args, runs_dir)  # the quality benchmark has no SQN runs
    reward.row_for("sasrec", "cross-entropy", 0, reward.parse_args([]), runs_dir)  # without the option
    assert trained == [("sasrec", "cross-entropy", 1), ("sasrec", "cross-entropy", 2), ("sasrec", "sqn", 0), ("sasrec", "cross-entropy", 0)]
    assert calls == [] and not runs_dir.exists()
