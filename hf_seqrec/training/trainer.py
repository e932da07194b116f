"""The fine-tuning loop on accelerate: data -> model -> epochs -> best checkpoint -> metrics.

It follows accelerate's ``complete_nlp_example.py``: ``prepare``, ``accumulate``,
``gather_for_metrics``, ``save_state``/``load_state``. A resumed run skips the batches it has
already seen with ``skip_first_batches`` and gets its RNG states back from ``load_state``, so it
continues exactly where the killed run stopped.

``train`` shows the loop itself (epochs -> batches -> accumulate/backward/step -> validation);
the set-up, the resume and the bookkeeping of a step and of an epoch (best model, early stopping)
are the named helpers after it. What the loop starts from and ends with lives next to it:
``run_data`` (the prepared data and evaluation loaders), ``results`` (the final evaluation,
metrics.json and test_ranks.json), ``export`` (the final checkpoint and model card) and
``popularity`` (the most-popular baseline, a run without a loop).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from transformers import get_scheduler

from ..console import say
from ..data.collator import IGNORE_INDEX, NextItemCollator, VaryingTrainingWindows, training_windows
from ..data.prepare import PreparedData
from ..data.sampling import LengthGroupedSampler
from ..evaluation.evaluator import rank_targets
from ..evaluation.new_item_boost import boost_summary, choose_new_item_boost, cold_targets, nothing_to_trade
from ..evaluation.ranking import full_ranking_metrics
from ..io_utils import atomic_directory, replace_directory, write_json_atomic, write_text_atomic
from ..modeling import SeqRecForNextItem
from ..modeling.baselines import BASELINE_SIZES, POPULARITY, is_baseline_backbone
from .config import ConfigError, FinetuneConfig, resolve_mixed_precision
from .console import TrainingConsole
from .distillation import distillation_term, load_teacher
from .export import export_final_checkpoint
from .popularity import fit_popularity
from .results import final_evaluation, run_results, summary_line, training_record, write_test_ranks
from .reward_objective import q_head_settings, reward_batch_key, reward_function
from .run_data import evaluation_loader, prepare_run
from .output_dir import (
    BEST_MODEL_DIR,
    CHECKPOINTS_DIR,
    LAST_STATE,
    TRAINABLE_WEIGHTS_FILE,
    TRAINER_STATE_FILE,
    check_output_dir,
    releases_output_dir_lock,
)

logger = logging.getLogger(__name__)



@dataclass
class TrainerState:
    """Where the loop is; saved with every checkpoint so a resumed run knows what to skip."""

    epoch: int = 0
    step_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    global_step: int = 0  # optimizer steps taken
    best_ndcg: float = -1.0
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    train_seconds: float = 0.0
    trained_positions: int = 0  # labelled item positions seen (the "tokens" of this model)
    epoch_loss_sum: float = 0.0  # running loss of the current epoch, kept so a resumed epoch reports the same mean
    epoch_loss_batches: int = 0
    torch_rng_fingerprint: str = ""  # of the main process's torch RNG when saved, checked after load_state
    history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, directory: Path) -> None:
        write_json_atomic(directory / TRAINER_STATE_FILE, self.__dict__)

    @classmethod
    def load(cls, directory: Path) -> "TrainerState":
        return cls(**json.loads((directory / TRAINER_STATE_FILE).read_text(encoding="utf-8")))


def build_model(config: FinetuneConfig, prepared: PreparedData) -> tuple[SeqRecForNextItem, Any]:
    """The model and its tokenizer (``None`` for a from-scratch baseline backbone, which has none)."""
    # The run config has settled what a from-scratch baseline is built with: its sizes filled in, no LoRA,
    # no text initialisation, no layer cut.
    baseline = is_baseline_backbone(config.backbone)
    backbone_options = {name: getattr(config, name) for name in BASELINE_SIZES} if baseline else None
    model, tokenizer = SeqRecForNextItem.from_backbone(
        config.backbone,
        # The item table starts from the item texts only where there is a tokenizer to read them.
        prepared.catalog.texts if config.item_text_init else None,
        num_items=len(prepared.catalog),
        backbone_options=backbone_options,
        **config.model_options(),
        q_head=q_head_settings(config),  # None without --reward: no head, and config.json as before
    )
    model.item_catalog = prepared.catalog
    if config.input_mode == "id+text" and not config.item_text_init:
        # The text read after the most recent items (from_backbone tokenised it when given the texts).
        model.set_item_text_tokens(prepared.catalog.texts, tokenizer)
    if config.item_score_bias or config.item_text_tower:
        from ..modeling.popularity_counts import item_popularity

        counts = item_popularity(prepared.splits["train"]["items"], len(prepared.catalog))
        if config.item_text_tower:
            trained = [item for item, count in enumerate(counts) if count]
            # ID embeddings only for items training sees; every other item is scored from its text.
            model.item_table.set_items_with_id_embedding(trained)
            # The text statistics from those items alone: a held-out item is then treated exactly like an item
            # added after training (before the score offsets, whose text popularity map reads the standardised text).
            model.item_table.fit_text_statistics(trained)
        if config.item_score_bias:
            model.item_table.set_score_bias_from_counts(counts)
    return model, tokenizer


def build_optimizer(model: SeqRecForNextItem, config: FinetuneConfig) -> torch.optim.Optimizer:
    """AdamW with the item table in its own group (its own learning rate, no weight decay).

    The text tower's projection matrix (and the text popularity map) gets that rate divided by its fan-in: Adam moves every weight
    by about the learning rate per step, and a projected vector sums fan-in of those moves, so at the
    table's rate one step would shift every item's vector hundreds of times further than it moves an
    ID row (the scaling muP prescribes for hidden-to-hidden matrices). The let-it-go design's map of the
    content embeddings is such a map too; its deltas are capped after every step (:func:`_cap_deltas_after_every_step`).
    """
    table_lr = config.item_table_learning_rate or config.learning_rate
    # Maps from a text encoding (the projection, let-it-go's content map, the popularity predicted from text): fan-in scaled.
    from_text = {"item_table.text_projection.weight", "item_table.content_map.weight", "item_table.text_offset.weight"}
    projection = [p for n, p in model.named_parameters() if p.requires_grad and n in from_text]
    table = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("item_table.") and n not in from_text]
    others = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("item_table.")]
    groups = [
        {"params": others, "lr": config.learning_rate, "weight_decay": config.weight_decay},
        {"params": table, "lr": table_lr, "weight_decay": 0.0},
    ]
    if projection:
        groups.append({"params": projection, "lr": table_lr / projection[0].size(1), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups)
    _cap_deltas_after_every_step(optimizer, model)
    return optimizer


def _cap_deltas_after_every_step(optimizer: torch.optim.Optimizer, model: SeqRecForNextItem) -> None:
    """Let-it-go: project the item deltas back within their bound after every optimizer step.

    A hook on the optimizer itself (``register_step_post_hook``), so it runs after every step the
    optimizer really takes, whoever calls it: accelerate's wrapper skips the inner step while
    gradients accumulate and the fp16 scaler skips overflowing ones, and the hook skips with them.
    Hooks are not part of an optimizer's state: a resumed run rebuilds the optimizer here, hook
    included, then loads the weights, which were projected before they were saved, so it continues
    exactly as the uninterrupted run would.
    """
    table = model.item_table
    if table.text_tower and table.text_design == "let-it-go":
        optimizer.register_step_post_hook(lambda _optimizer, _args, _kwargs: table.project_deltas())


def build_training_windows(train_split, config: FinetuneConfig):
    """The training windows: cut at the same places every epoch, or (``vary_windows``) at new places every epoch."""
    # With --reward each window also carries the ratings of its labels, which the collator turns into rewards.
    rated = config.reward is not None
    if config.vary_windows:
        ratings = train_split["ratings"] if rated else None
        return VaryingTrainingWindows(train_split["items"], config.max_len, seed=config.seed, ratings=ratings)
    return training_windows(train_split, config.max_len, with_ratings=rated)


def training_loader(windows, config: FinetuneConfig, collator: NextItemCollator) -> DataLoader:
    """Shuffled training windows; with ``group_by_length``, batches of windows of similar length."""
    if config.group_by_length:
        varying = isinstance(windows, VaryingTrainingWindows)
        lengths = windows.lengths(0) if varying else [len(items) for items in windows["input_items"]]
        sampler = LengthGroupedSampler(
            lengths, config.batch_size, seed=config.seed, lengths_for_epoch=windows.lengths if varying else None
        )
        return DataLoader(windows, batch_size=config.batch_size, sampler=sampler, collate_fn=collator, num_workers=config.num_workers)
    # A plain shuffle: accelerate swaps in its seedable sampler (use_seedable_sampler) for exact resumes.
    return DataLoader(windows, batch_size=config.batch_size, shuffle=True, collate_fn=collator, num_workers=config.num_workers)


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _register_trainable_only_checkpoints(accelerator: Accelerator) -> None:
    """Make ``save_state`` store only trainable weights (adapter + item table), not the frozen backbone.

    The backbone is rebuilt from its source on resume; writing its 538 MB on every checkpoint
    would dominate checkpoint time and disk.
    """

    def save_hook(models: list[torch.nn.Module], weights: list[dict], output_dir: str) -> None:
        for index, model in enumerate(models):
            state = _trainable_state(accelerator.unwrap_model(model))
            if accelerator.is_main_process:
                save_file(state, Path(output_dir) / f"{index}_{TRAINABLE_WEIGHTS_FILE}")
        weights.clear()  # nothing left for accelerate's own full-model file

    def load_hook(models: list[torch.nn.Module], input_dir: str) -> None:
        for index, model in enumerate(models):
            state = load_file(Path(input_dir) / f"{index}_{TRAINABLE_WEIGHTS_FILE}")
            missing = accelerator.unwrap_model(model).load_state_dict(state, strict=False).unexpected_keys
            if missing:
                raise ValueError(f"{input_dir}: checkpoint weights do not fit the model: {missing[:5]}")
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_training_state(accelerator: Accelerator, output_dir: Path, state: TrainerState) -> None:
    """``save_state`` into a temporary directory, then swap it in: a kill never tears a checkpoint."""
    checkpoints = output_dir / CHECKPOINTS_DIR
    staging = checkpoints / f".staging-{state.global_step}-{state.epoch}-{state.step_in_epoch}"
    if accelerator.is_main_process:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    state.torch_rng_fingerprint = _torch_rng_fingerprint()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state.save(staging)
        replace_directory(staging, checkpoints / LAST_STATE)
    accelerator.wait_for_everyone()


def _torch_rng_fingerprint() -> str:
    return hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()[:16]


def _resumed_epoch_batches(accelerator: Accelerator, train_loader: DataLoader, consumed: int) -> Iterator[Any]:
    """The rest of a resumed epoch (``skip_first_batches``), started without a draw from the restored torch RNG.

    Starting an epoch's iterator draws from torch's global RNG (the DataLoader's base seed). The killed run
    made that draw when its epoch began, before its checkpoint saved the RNG state; the resumed run starts a
    new iterator after ``load_state`` restored that state. Left alone, this second draw would shift every later
    dropout mask and latent sample (SVAE), and a model with randomness in training would not continue as the
    killed run would have. So the first fetch, which starts the iterator, runs on a copy of the RNG state.
    """
    iterator = iter(accelerator.skip_first_batches(train_loader, consumed))
    with torch.random.fork_rng(devices=[]):
        first = next(iterator, None)
    if first is None:
        return
    yield first
    yield from iterator


@releases_output_dir_lock
def train(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune, keep the best epoch by validation NDCG@10, and write the final checkpoint and metrics."""
    if config.backbone == POPULARITY:
        return fit_popularity(config)
    output_dir = check_output_dir(config)
    accelerator = _make_accelerator(config, output_dir)
    prepared = prepare_run(config, output_dir, accelerator)
    if config.new_item_boost_max_warm_loss is not None:
        _check_boost_can_be_chosen(prepared, config)  # before training, not after it
    collator = NextItemCollator(max_len=config.max_len, reward=reward_function(config), reward_key=reward_batch_key(config))
    train_loader = training_loader(build_training_windows(prepared.splits["train"], config), config, collator)
    validation_loader = evaluation_loader(prepared.splits["validation"], config, collator)
    test_loader = evaluation_loader(prepared.splits["test"], config, collator)
    model, tokenizer = build_model(config, prepared)
    teacher = load_teacher(config.teacher, prepared, config.to_dict(), accelerator.device) if config.teacher else None
    optimizer = build_optimizer(model, config)
    total_steps = _total_steps(config, len(train_loader))
    scheduler = get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=max(total_steps, 1)
    )
    model, optimizer, train_loader, validation_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, validation_loader, test_loader, scheduler
    )
    _register_trainable_only_checkpoints(accelerator)
    state = _resume_or_start(accelerator, config, output_dir)

    best_validation_ranks = None  # reused for the final report instead of scoring the best epoch twice
    stop = state.global_step >= total_steps
    progress = TrainingConsole(
        total_steps, state.global_step, math.ceil(len(train_loader) / config.gradient_accumulation_steps), config.num_epochs,
        show=accelerator.is_local_main_process,
    )
    while not stop and state.epoch < config.num_epochs:
        model.train()
        train_loader.set_epoch(state.epoch)
        # A resumed epoch skips the batches the killed run had already trained on.
        batches = _resumed_epoch_batches(accelerator, train_loader, state.step_in_epoch) if state.step_in_epoch else train_loader
        clock = time.perf_counter()
        for batch in batches:
            with accelerator.accumulate(model):
                labelled = accelerator.gather((batch["labels"] != IGNORE_INDEX).sum().reshape(1)).sum()
                # Divide by the global count / processes: DDP's gradient mean then equals the
                # gradient of the mean loss over the whole (split) batch.
                denominator = labelled.float() / accelerator.num_processes
                # training_step: the KL weight of an SVAE backbone anneals with the optimizer steps taken (restored on resume).
                outputs = model(**batch, num_items_in_batch=denominator, training_step=state.global_step)
                loss = outputs.loss
                if teacher is not None:
                    distilled = distillation_term(
                        accelerator.unwrap_model(model), teacher, batch, outputs.last_hidden_state, config.distill_temperature, denominator
                    )
                    loss = (1.0 - config.distill_weight) * loss + config.distill_weight * distilled
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            _count_batch(state, accelerator, loss, labelled)
            if not accelerator.sync_gradients:
                continue  # accumulating gradients: no optimizer step was taken
            stop = _count_optimizer_step(state, accelerator, scheduler, progress, config, total_steps)
            if stop:
                break
            if config.checkpoint_every_steps and state.global_step % config.checkpoint_every_steps == 0:
                clock = _add_train_time(state, clock)  # the saved state counts the time trained so far
                save_training_state(accelerator, output_dir, state)
        _add_train_time(state, clock)
        validation_ranks = rank_targets(model, validation_loader, accelerator)
        improved = _end_epoch(state, validation_ranks, model, accelerator, output_dir, config)
        if improved:
            best_validation_ranks = validation_ranks
        progress.end_epoch(state.history[-1], improved, state.global_step)
        stop = _stops_early(state, config, accelerator) or stop
        save_training_state(accelerator, output_dir, state)
    progress.close()

    best = _load_best_model(accelerator, output_dir)
    boost_choice = None
    # The reloaded best model is not wrapped by accelerate: score it under the run's own precision.
    with accelerator.autocast():
        if config.new_item_boost_max_warm_loss is not None:
            boost_choice = _choose_new_item_boost(best, validation_loader, prepared, config, accelerator)
            best_validation_ranks = None  # the saved model is the boosted one: its validation split is scored again
        validation, test = final_evaluation(best, validation_loader, test_loader, prepared, config, accelerator, best_validation_ranks)
    results = run_results(
        config, prepared, validation, test, _training_record(state, config, accelerator.num_processes), show=accelerator.print
    )
    if boost_choice is not None:
        results["new_item_boost"] = boost_choice
    if accelerator.is_main_process:
        # Every process holds all ranks (gather_for_metrics); the main one writes them, next to metrics.json.
        write_test_ranks(output_dir, prepared, config, test)
        export_final_checkpoint(output_dir, best, tokenizer, results, config, prepared)
    if accelerator.is_main_process:
        say(summary_line(test.metrics, prepared, f"; best epoch {state.best_epoch}"))
    accelerator.end_training()
    return results


def _make_accelerator(config: FinetuneConfig, output_dir: Path) -> Accelerator:
    """The run's Accelerator; refuses global batch sizes the processes cannot share evenly."""
    accelerator = Accelerator(
        mixed_precision=resolve_mixed_precision(config.mixed_precision),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=config.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # split_batches: `batch_size` is the global batch, so 1 or N processes see the same
        # batches and take the same optimizer steps. The seedable sampler makes each epoch's
        # order a function of (seed, epoch), which is what lets a resumed run skip ahead exactly.
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True, data_seed=config.seed),
    )
    if config.batch_size % accelerator.num_processes or config.eval_batch_size % accelerator.num_processes:
        raise ConfigError(
            f"batch_size ({config.batch_size}) and eval_batch_size ({config.eval_batch_size}) are global batch sizes and "
            f"must be divisible by the number of processes ({accelerator.num_processes})"
        )
    return accelerator


def _total_steps(config: FinetuneConfig, batches_per_epoch: int) -> int:
    """Optimizer steps the run takes: every epoch's, capped by ``max_steps``."""
    total = math.ceil(batches_per_epoch / config.gradient_accumulation_steps) * config.num_epochs
    return total if config.max_steps is None else min(total, config.max_steps)


def _resume_or_start(accelerator: Accelerator, config: FinetuneConfig, output_dir: Path) -> TrainerState:
    """The loop's state: loaded with the weights, optimizer and RNG states from the last checkpoint
    (``--resume``), or a fresh one, the run's training_config.yaml written. Starts the trackers."""
    state = TrainerState()
    if config.resume:
        last_state = output_dir / CHECKPOINTS_DIR / LAST_STATE
        # Every file accelerate unpickles here is read with weights_only=True (tensors and numbers only).
        accelerator.load_state(str(last_state), load_kwargs={"weights_only": True})
        state = TrainerState.load(last_state)
        # accelerate only logs a warning when it cannot restore the RNG states; an exact resume needs them.
        if accelerator.is_main_process and state.torch_rng_fingerprint and state.torch_rng_fingerprint != _torch_rng_fingerprint():
            raise RuntimeError(f"{last_state}: the random number generator states were not restored; the resume would not be exact")
        accelerator.print(f"Resumed from {last_state}: epoch {state.epoch}, step {state.global_step}")
    elif accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(output_dir / "training_config.yaml", config.to_yaml())
    if config.report_to:
        tracker_config = {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))}
        accelerator.init_trackers("hf_seqrec", config=tracker_config)
    return state


def _count_batch(state: TrainerState, accelerator: Accelerator, loss: torch.Tensor, labelled: torch.Tensor) -> None:
    """Add one micro-batch to the epoch's position count and running loss (the loss averaged over processes)."""
    state.step_in_epoch += 1
    state.trained_positions += int(labelled)
    state.epoch_loss_sum += float(accelerator.reduce(loss.detach(), reduction="mean"))
    state.epoch_loss_batches += 1


def _count_optimizer_step(state: TrainerState, accelerator: Accelerator, scheduler, progress, config: FinetuneConfig, total_steps: int) -> bool:
    """Count an optimizer step, show and log the epoch's running loss; whether it was the run's last step."""
    state.global_step += 1
    epoch_loss = state.epoch_loss_sum / state.epoch_loss_batches
    progress.step(epoch_loss)
    if config.report_to:
        accelerator.log({"train/loss": epoch_loss, "train/lr": scheduler.get_last_lr()[0]}, step=state.global_step)
    return state.global_step >= total_steps


def _add_train_time(state: TrainerState, since: float) -> float:
    """Add the seconds trained since ``since`` to the state; returns now, where the next count starts."""
    now = time.perf_counter()
    state.train_seconds += now - since
    return now


def _end_epoch(state: TrainerState, validation_ranks, model, accelerator: Accelerator, output_dir: Path, config: FinetuneConfig) -> bool:
    """Record the epoch's validation, save the model to ``best/`` if it beats every earlier epoch, and move the
    state to the next epoch. Returns whether this epoch is the new best."""
    metrics = full_ranking_metrics(validation_ranks, n_bootstrap=0)
    epoch_record = {
        "epoch": state.epoch + 1,
        "step": state.global_step,
        "train_loss": state.epoch_loss_sum / max(state.epoch_loss_batches, 1),
        "validation_ndcg@10": metrics["ndcg@10"],
        "validation_hr@10": metrics["hr@10"],
    }
    state.history.append(epoch_record)  # its line on the console: TrainingConsole.end_epoch
    if config.report_to:
        accelerator.log({"validation/ndcg@10": metrics["ndcg@10"], "validation/hr@10": metrics["hr@10"]}, step=state.global_step)
    improved = metrics["ndcg@10"] > state.best_ndcg
    if improved:
        state.best_ndcg, state.best_epoch, state.epochs_without_improvement = metrics["ndcg@10"], state.epoch + 1, 0
        if accelerator.is_main_process:
            with atomic_directory(output_dir / BEST_MODEL_DIR) as staging:
                accelerator.unwrap_model(model).save_pretrained(staging)
    else:
        state.epochs_without_improvement += 1
    state.epoch += 1
    state.step_in_epoch, state.epoch_loss_sum, state.epoch_loss_batches = 0, 0.0, 0
    return improved


def _stops_early(state: TrainerState, config: FinetuneConfig, accelerator: Accelerator) -> bool:
    """Whether validation NDCG@10 has not improved for ``early_stopping_patience`` epochs (said on the terminal)."""
    if config.early_stopping_patience and state.epochs_without_improvement >= config.early_stopping_patience:
        if accelerator.is_main_process:
            say(f"Early stopping: no better validation NDCG@10 for {config.early_stopping_patience} epochs")
        return True
    return False


def _validation_targets(prepared: PreparedData, config: FinetuneConfig) -> list[int]:
    """The validation targets the run scores: the first ``eval_max_users`` users' with that option."""
    targets = prepared.splits["validation"]["target"]
    return targets if config.eval_max_users is None else targets[: config.eval_max_users]


def _check_boost_can_be_chosen(prepared: PreparedData, config: FinetuneConfig) -> None:
    """The boost is chosen by trading cold validation targets against warm ones: the run must score some of each."""
    problem = nothing_to_trade(cold_targets(_validation_targets(prepared, config), prepared.cold_items))
    if problem:
        raise ConfigError(f"new_item_boost_max_warm_loss: {problem} (raise --eval_max_users or --cold_start_fraction)")


def _choose_new_item_boost(
    model: SeqRecForNextItem, validation_loader: DataLoader, prepared: PreparedData, config: FinetuneConfig, accelerator: Accelerator
) -> dict[str, Any]:
    """Set the best model's ``new_item_boost`` from its cold-start validation split; returns the choice and its sweep."""
    choice = choose_new_item_boost(
        model, validation_loader, _validation_targets(prepared, config), prepared.cold_items, config.new_item_boost_max_warm_loss, accelerator=accelerator
    )
    model.config.new_item_boost = choice["chosen"]
    accelerator.print(boost_summary(choice))
    return choice


def _load_best_model(accelerator: Accelerator, output_dir: Path) -> SeqRecForNextItem:
    """The best epoch's model from ``best/``, once every process is done training, on this process's device."""
    accelerator.wait_for_everyone()
    return SeqRecForNextItem.from_pretrained(output_dir / BEST_MODEL_DIR).to(accelerator.device)


def _training_record(state: TrainerState, config: FinetuneConfig, num_processes: int) -> dict[str, Any]:
    """metrics.json's ``training`` block from the loop's final state."""
    return training_record(
        config.backbone, best_epoch=state.best_epoch, epochs_run=state.epoch, optimizer_steps=state.global_step,
        train_seconds=state.train_seconds, trained_positions=state.trained_positions, num_processes=num_processes,
        history=state.history,
    )
