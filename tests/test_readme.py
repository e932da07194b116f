"""The README is the users' contract: its commands name real scripts, configs and flags, and its Python runs.

The shell commands are checked against each script's own ``--help`` (training them all would take
hours); the Python snippets are run as written against a short MovieLens-100K run of the tiny backbone
saved where the README's examples expect ``runs/smollm2-ml100k``.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hf_seqrec.training.finetune_command import finetune_main
from hf_seqrec.training.config import FinetuneConfig
from testing_utils import REPO, script_env

README = (REPO / "README.md").read_text(encoding="utf-8")
SCRIPT = re.compile(r"(scripts/\w+\.py)")
# Snippets that need a checkpoint trained with the text tower (runs/smollm2-text-tower); the text
# tower's add_items is covered by tests/test_cold_start.py and tests/test_item_text.py.
NEEDS_TEXT_TOWER = "smollm2-text-tower"


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def script_commands() -> list[tuple[str, list[str]]]:
    """``(script, options given to it)`` for every command of the README's shell blocks that runs a script.

    Continued lines are joined; an ``# options: ...`` comment right after a command lists more of its flags.
    """
    commands = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("# options:") and commands:
                commands[-1][1].extend(re.findall(r"--\w+", line))
                continue
            match = SCRIPT.search(line)
            if match:
                after = line[match.end():].split("#", 1)[0]
                commands.append((match.group(1), [token for token in shlex.split(after) if token.startswith("--")]))
    return commands


@functools.cache
def help_text(script: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / script), "--help"], cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_readme_commands_name_existing_scripts_and_options_they_accept():
    commands = script_commands()
    assert {script for script, _ in commands} >= {"scripts/finetune.py", "scripts/evaluate_checkpoint.py", "scripts/serve.py", "scripts/recommend.py"}
    helps = {script: help_text(script) for script in {script for script, _ in commands}}
    for script, options in commands:
        accepted = set(re.findall(r"--[\w-]+", helps[script]))
        unknown = [option for option in options if option not in accepted]
        assert not unknown, f"README runs {script} with {unknown}, which it does not accept"


def test_readme_option_table_names_finetune_flags_and_configs_that_load():
    table = [line for line in README.splitlines() if line.startswith("| `--")]
    flags = {flag for line in table for flag in re.findall(r"`(--[\w-]+)", line)}
    assert len(flags) > 30
    accepted = set(re.findall(r"--[\w-]+", help_text("scripts/finetune.py")))
    assert sorted(flags - accepted) == []
    configs = set(re.findall(r"configs/\w+\.yaml", README))
    assert "configs/cpu.yaml" in configs
    for config in configs:
        FinetuneConfig.from_yaml(REPO / config)  # raises, naming the key, if the file no longer fits


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> Path:
    """A short run on the README's default data (MovieLens-100K), saved as ``runs/smollm2-ml100k``."""
    root = tmp_path_factory.mktemp("readme")
    output_dir = root / "runs" / "smollm2-ml100k"
    status = finetune_main([
        "--backbone", "tiny-llama", "--max_len", "20", "--max_steps", "2", "--eval_max_users", "20",
        "--bootstrap_samples", "10", "--report_to", "none", "--output_dir", str(output_dir),
    ])
    assert status == 0
    return root


def test_readme_python_snippets_run_as_written(readme_run, monkeypatch):
    blocks = [block for block in code_blocks("python") if NEEDS_TEXT_TOWER not in block]
    assert len(blocks) >= 4
    monkeypatch.chdir(readme_run)  # the snippets name the run by its relative path
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # one namespace, as in a notebook session
    top = namespace["top"]  # the explanation example
    assert top["rank"] == 1 and top["explanation"]
    assert {"item_id", "text", "contribution", "position"} <= set(top["explanation"][0])
    assert type(namespace["model"]).__name__ == "SeqRecForNextItem"


def test_console_commands_point_at_the_scripts_entry_functions():
    import importlib
    import tomllib

    commands = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    for name in ("hf-seqrec-finetune", "hf-seqrec-evaluate", "hf-seqrec-recommend", "hf-seqrec-serve"):
        assert name in README, f"README does not name the {name} command"
        module, function = commands[name].split(":")
        assert callable(getattr(importlib.import_module(module), function)), commands[name]
    # Installed next to this Python by `pip install` (make install): the command runs the script's parser.
    installed = Path(sys.executable).parent / "hf-seqrec-finetune"
    result = subprocess.run([str(installed), "--help"], env=script_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: hf-seqrec-finetune")
    assert set(re.findall(r"--[\w-]+", result.stdout)) == set(re.findall(r"--[\w-]+", help_text("scripts/finetune.py")))
