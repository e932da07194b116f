"""The data every run starts from: the prepared splits and the loaders its final evaluation reads them with.

The fine-tuning loop and the popularity baseline share it, so both see the same users, the same held-out
cold-start items and the same first-``eval_max_users`` cut of the evaluation splits.
"""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset
from torch.utils.data import DataLoader

from ..data.collator import NextItemCollator
from ..data.cold_start_split import apply_cold_start
from ..data.prepare import PreparedData, prepare_data
from ..modeling.baselines import POPULARITY
from .config import FinetuneConfig
from .output_dir import clear_previous_run
from .reward_objective import check_rated_data


def prepare_run(config: FinetuneConfig, output_dir: Path, accelerator: Accelerator | None = None) -> PreparedData:
    """The set-up every run shares: seed, clear the run being overwritten, read the data, hold cold-start items out.

    With an ``accelerator`` only the main process clears, and the others wait for it before reading
    the data; without one (the popularity baseline) this process is the only one.
    """
    set_seed(config.seed)
    resuming = config.resume and config.backbone != POPULARITY  # the popularity baseline has no state to resume
    is_main_process = accelerator is None or accelerator.is_main_process
    if is_main_process and config.overwrite_output_dir and not resuming and output_dir.exists():
        clear_previous_run(output_dir)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    prepared = prepare_data(config.data_config())
    check_rated_data(config, prepared)
    config.record_data_report(prepared.report)  # training_config.yaml says how the data was read
    if config.cold_start_fraction:
        apply_cold_start(prepared, config.cold_start_fraction, config.seed)
    return prepared


def evaluation_loader(split: Dataset, config: FinetuneConfig, collator: NextItemCollator) -> DataLoader:
    """The first ``eval_max_users`` users of ``split`` (every user without it), in split order."""
    if config.eval_max_users is not None:
        split = split.select(range(min(config.eval_max_users, len(split))))
    return DataLoader(split, batch_size=config.eval_batch_size, shuffle=False, collate_fn=collator)
