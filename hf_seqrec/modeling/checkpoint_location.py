"""Where a checkpoint's files are (a local directory, or a Hub repo downloaded into one) and which revision they are.

``SeqRecForNextItem.from_pretrained`` reads every file from the directory :func:`local_checkpoint_dir`
gives, so this file travels with every checkpoint (a same-folder import of ``modeling_seqrec.py``);
besides the standard library it needs only huggingface_hub, which comes with transformers.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from .checkpoint_files import ADAPTER_CONFIG_FILE, CATALOG_FILE, POPULARITY_FILE


def local_checkpoint_dir(name_or_path: str | os.PathLike, **kwargs: Any) -> Path:
    """A local directory for a checkpoint given as a path or a Hub repo id (downloaded with huggingface_hub).

    `revision`, `token`, `cache_dir` and `local_files_only` in ``kwargs`` are passed to the download.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a hf_seqrec checkpoint (no config.json)")
        return path
    hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "local_files_only") if k in kwargs}
    return Path(snapshot_download(str(name_or_path), **hub_kwargs))


def checkpoint_revision(directory: str | os.PathLike) -> tuple[str, str]:
    """``(revision, source)`` of the checkpoint in a local ``directory``, to tell two checkpoints apart.

    A Hub snapshot folder (``.../snapshots/<commit>``, what :func:`local_checkpoint_dir` returns for a
    Hub id) is ``("<commit>", "hub-commit")``; any other directory is ``("<sha256>", "sha256-of-files")``,
    the first 16 hex digits of a SHA-256 over the names and bytes of every file that changes what the
    model recommends: ``config.json``, the catalogue, the popularity counts (``fallback="popular"``),
    the adapter config and every ``*.safetensors`` (weights, item table, item text tokens), not the
    model card. Two directories get the same revision exactly when they hold the same such files.
    """
    directory = Path(directory)
    if directory.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", directory.name):
        return directory.name, "hub-commit"
    names = sorted({*(p.name for p in directory.glob("*.safetensors")), "config.json", CATALOG_FILE, POPULARITY_FILE, ADAPTER_CONFIG_FILE})
    digest = hashlib.sha256()
    for name in names:
        path = directory / name
        if not path.is_file():
            continue
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16], "sha256-of-files"
