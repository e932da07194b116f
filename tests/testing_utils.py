"""Plain helpers several test files share: tiny checkpoints, script subprocesses, small files.

Fixtures live in ``conftest.py``; what a test calls with its own arguments lives here and is imported
by name (``from testing_utils import ...``), the way ``hub_server`` is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hf_seqrec import SeqRecForNextItem
from hf_seqrec.modeling.item_catalog import ItemCatalog
from hf_seqrec.pipelines import save_item_popularity

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- tiny checkpoints
def numbered_catalog(num_items: int, first_year: int = 1970) -> ItemCatalog:
    """Items "1".."num_items" titled "Film number i (first_year + i) | Drama": distinct texts, no look-alikes."""
    ids = [str(i) for i in range(1, num_items + 1)]
    return ItemCatalog(ids, [f"Film number {i} ({first_year + i}) | Drama" for i in range(1, num_items + 1)])


def save_tiny_lm_checkpoint(
    directory: Path, catalog: ItemCatalog, *, max_len: int, popularity: list[list[int]] | None = None
) -> Path:
    """Save a seeded tiny-llama checkpoint (model, tokenizer, optional popularity counts) into `directory`.

    The LoRA adapter is drawn away from zero so the scores depend on it, as after training (merging it
    changes the backbone), and the item table is scaled up so scores are far apart: no accidental ties,
    and differences stay far above rounding noise.
    """
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=max_len)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
        model.item_table.weight.mul_(20)
    model.item_catalog = catalog
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    if popularity is not None:
        save_item_popularity(directory, popularity, num_items=len(catalog))
    return directory


def history_logits(model: SeqRecForNextItem, rows: list[int]) -> torch.Tensor:
    """The model's scores for every catalogue row after one unpadded history of rows."""
    with torch.no_grad():
        return model(torch.tensor([rows]), return_logits=True).logits[0]


def remove_one_weight(path: Path) -> tuple[str, int]:
    """Rewrite a safetensors file without its first weight (by name); return that name and how many there were."""
    weights = load_file(path)
    left_out = sorted(weights)[0]
    save_file({key: value for key, value in weights.items() if key != left_out}, path)
    return left_out, len(weights)


# ----------------------------------------------------------------------------- scripts in a subprocess
def script_env(**extra: str) -> dict[str, str]:
    """The environment a script under test runs in: offline, one thread, this checkout first on the path.

    No Hub token is passed on, so a script can never reach a real account; a test that needs one sets it.
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HF_TOKEN", None)
    env.update(extra)
    return env


def run_finetune(*args: str, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``scripts/finetune.py`` with `args` from the repository root, as a user would."""
    command = (launcher or [sys.executable]) + [str(REPO / "scripts" / "finetune.py"), *args]
    return subprocess.run(command, cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=600)


def finetune_metrics(output_dir: Path, *args: str) -> dict:
    """Run ``scripts/finetune.py`` with `args`, require success, and return its ``metrics.json``."""
    done = run_finetune(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((output_dir / "metrics.json").read_text())


def run_in_fresh_process(
    script: str, cwd: Path, *, timeout: int = 300, base_env: dict[str, str] | None = None, **env: str
) -> dict:
    """Run `script` with ``python -c`` in `cwd`, offline and with an empty remote-code module cache there,
    require success, and return the JSON object it printed after ``RESULT``.

    A fresh process is how a test shows what a checkpoint needs on its own (``trust_remote_code``
    without ``hf_seqrec`` imported): nothing loaded by this test process can leak into it.
    """
    env = dict(os.environ if base_env is None else base_env, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(cwd / "modules"), **env)
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT", 1)[1])


# ----------------------------------------------------------------------------- small files
def write(directory: Path, name: str, content: str | bytes) -> Path:
    """Write `content` (text as UTF-8) to ``directory / name`` byte for byte and return the path."""
    path = directory / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def pattern_batch(num_items: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each item is followed by the next id: a rule a sequence model learns from the sequences alone.

    16 rows of 10 items (one right-padded), with the next-item labels (-100 on padding).
    """
    starts = torch.arange(0, 16)
    items = (starts[:, None] + torch.arange(10)[None, :]) % num_items
    mask = torch.ones_like(items)
    mask[3, 6:] = 0  # one right-padded row
    labels = (items + 1) % num_items
    labels[mask == 0] = -100
    return items, mask, labels
