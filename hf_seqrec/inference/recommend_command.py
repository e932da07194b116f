"""``scripts/recommend.py``: the top-k items for every user of a data set, as one Parquet file.

    accelerate launch scripts/recommend.py --model runs/smollm2-ml100k --dataset movielens-100k \\
        --output recs.parquet --top_k 100 --precision int8
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json

from transformers.hf_argparser import string_to_bool

from ..data.errors import DataValidationError
from ..data.prepare import DataConfig
from ..modeling.precision import PRECISIONS
from ..training.config import ConfigError, LiteralHelpFormatter, add_field_option, coerce_fields
from .batch import BatchRecommendConfig, process_state, recommend_to_parquet

# The options of DataConfig that say how the interactions are read, as scripts/finetune.py reads them
# (its item options do not apply: the item catalogue is the checkpoint's).
DATA_OPTIONS = (
    "dataset", "user_column", "item_column", "timestamp_column", "rating_column", "min_rating", "k_core", "file_format", "delimiter",
)

DESCRIPTION = """\
Write the top-k recommendations of every user of a data set to a Parquet file with one row per user
and rank (columns user, item, score, rank). Interactions are read as scripts/finetune.py reads them
(built-in name or file, same column options), each user's whole history in time order; items of the
history are not recommended (like pipeline("next-item")). Under `accelerate launch` the processes
share the users. Users are processed in shards written to OUTPUT.shards/ one by one (atomically): a
killed job run again with the same arguments resumes where it stopped; with other arguments it
refuses and says what differs, unless --overwrite. An existing OUTPUT made with other arguments is
only replaced with --overwrite; one made with the same arguments is left as it is."""


def build_parser() -> argparse.ArgumentParser:
    """The options of ``scripts/recommend.py``: the job's own, then DataConfig's reading options."""
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=LiteralHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint directory or Hub id")
    parser.add_argument("--output", required=True, help="Parquet file to write (shards go to OUTPUT.shards/ meanwhile)")
    parser.add_argument("--top_k", type=int, default=100, help="items per user (default 100)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None,
        help="int8: LoRA merged and the backbone's linear layers quantized to int8 (CPU, fastest); bf16: merged and "
        "cast to bfloat16; fp32 (default: the checkpoint as saved). The item table and scores stay fp32",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="histories per forward pass (default 64)")
    parser.add_argument("--shard_size", type=int, default=1000, help="users per shard, the unit of resumption (default 1000)")
    parser.add_argument(
        "--exclude_seen", type=string_to_bool, default=True, metavar="{true,false}",
        help="never recommend an item of the user's history (default true)",
    )
    parser.add_argument(
        "--fallback", choices=("none", "popular"), default="none",
        help="users none of whose items the checkpoint knows: left out and counted (none, default) or given the "
        "most popular items (popular; needs the checkpoint's item_popularity.json)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an output (or unfinished shards) made with other arguments")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    # Flags, help texts and value checks are DataConfig's own, as in scripts/finetune.py; values arrive as text.
    data = parser.add_argument_group("how the interactions are read (as scripts/finetune.py reads them)")
    for spec in dataclasses.fields(DataConfig):
        if spec.name in DATA_OPTIONS:
            if spec.name == "dataset":  # required here: a batch job names its data
                spec = copy.copy(spec)
                spec.default = dataclasses.MISSING
            add_field_option(data, spec)
    return parser


def recommend_main(argv: list[str] | None = None) -> int:
    """Write the recommendations ``argv`` asks for; the main process prints the job's summary as one JSON line."""
    args = build_parser().parse_args(argv)
    try:
        # Checked and converted as scripts/finetune.py does ("none" for no value, numbers from their text).
        options = argparse.Namespace(**{spec.name: spec.default for spec in dataclasses.fields(DataConfig)})
        for name in DATA_OPTIONS:
            setattr(options, name, getattr(args, name))
        coerce_fields(options, DataConfig)
        data = DataConfig(**vars(options))
        config = BatchRecommendConfig(
            model=args.model, output=args.output, data=data, top_k=args.top_k, precision=args.precision,
            batch_size=args.batch_size, shard_size=args.shard_size, exclude_seen=args.exclude_seen,
            fallback=args.fallback, overwrite=args.overwrite,
        )
    except (TypeError, ValueError) as error:
        if isinstance(error, DataValidationError):
            raise
        raise ConfigError(str(error)) from None
    summary = recommend_to_parquet(config, progress=not args.no_progress)
    if process_state().is_main_process:
        print(json.dumps(summary))
    return 0

