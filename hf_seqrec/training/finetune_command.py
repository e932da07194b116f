"""``scripts/finetune.py`` (``hf-seqrec-finetune``): parse the options, train, report, and push if asked."""

from __future__ import annotations

import json
import sys

from accelerate import PartialState

from ..console import configure_console
from ..publishing.push import push_checkpoint
from .config import ConfigError, config_from_args
from .trainer import train


def finetune_main(argv: list[str] | None = None) -> int:
    """Fine-tune with the options of ``argv`` (the command line when None); print the test metrics as one JSON line."""
    # Every option, data options included, is checked here: a bad one costs seconds, not a run.
    config = config_from_args(argv, description="Fine-tune a next-item recommender (LoRA on a pretrained LM) with accelerate.")
    try:
        configure_console(config.log_level)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    results = train(config)
    if not PartialState().is_main_process:
        return 0  # one process reports and pushes; the others wrote nothing of their own
    # The results first: a failed push below must not hide what the finished run achieved.
    print(json.dumps({"test": {k: results["test"][k] for k in ("ndcg@10", "hr@10", "mrr")}, "output_dir": config.output_dir}))
    sys.stdout.flush()
    if config.push_to_hub:
        push_checkpoint(config.output_dir, config.hub_model_id)  # PushError: exit 2, local checkpoint kept
    return 0
