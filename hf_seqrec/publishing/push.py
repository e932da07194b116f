"""Upload a finished checkpoint directory to the Hugging Face Hub."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from huggingface_hub import HfApi, get_token

logger = logging.getLogger(__name__)

# Training-time artefacts stay local: resumable state, the intermediate best copy and logs.
LOCAL_ONLY = ["checkpoints/**", "best/**", "logs/**", ".*", ".*/**"]


class PushError(RuntimeError):
    """The upload failed; the local checkpoint is untouched."""


def push_checkpoint(output_dir: str | os.PathLike, repo_id: str, *, token: str | None = None, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload the checkpoint files of ``output_dir``; returns the commit URL."""
    output_dir = Path(output_dir)
    if not (output_dir / "config.json").is_file():
        raise FileNotFoundError(f"{output_dir}: no config.json; is this a finished hf_seqrec run?")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(output_dir), repo_id=repo_id, ignore_patterns=LOCAL_ONLY)
    except Exception as error:  # any network or Hub failure: say what is still safe
        reason = _redact(f"{type(error).__name__}: {error}", token)
        raise PushError(
            f"pushing {output_dir} to {repo_id} failed ({reason}); "
            f"the local checkpoint in {output_dir} is complete and unchanged"
        ) from error
    logger.info("Pushed %s to %s", output_dir, repo_id)
    return str(getattr(commit, "commit_url", commit))


def _redact(text: str, token: str | None) -> str:
    """``text`` with the Hub token (given, or found by huggingface_hub) replaced, in case an error quotes it."""
    for secret in {token, get_token()}:
        if secret:
            text = text.replace(secret, "***")
    return text
