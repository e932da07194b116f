"""Atomic writes: a write that fails (or is killed) half-way leaves the old file or directory, never a torn one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_seqrec import io_utils
from hf_seqrec.io_utils import (
    atomic_directory,
    atomic_path,
    recover_directory,
    replace_directory,
    write_json_atomic,
    write_text_atomic,
)
from testing_utils import REPO


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_write_that_raises_half_way_leaves_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"ndcg@10": 0.5})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text('{"ndcg@10": 0.', encoding="utf-8")  # half a file
            raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"ndcg@10": 0.5}
    assert _leftovers(tmp_path) == []  # the temporary file is gone too


def test_a_payload_that_cannot_be_serialised_leaves_the_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert _leftovers(tmp_path) == []


def test_a_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    write_text_atomic(path, "old")

    def refuse(*args):
        raise OSError("rename refused")

    monkeypatch.setattr(io_utils.os, "replace", refuse)
    with pytest.raises(OSError, match="rename refused"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old" and _leftovers(tmp_path) == []


def test_a_process_killed_mid_write_leaves_the_old_file(tmp_path):
    """os._exit inside the write is a kill: no cleanup runs, and still the target is the old file."""
    path = tmp_path / "metrics.json"
    write_text_atomic(path, "old")
    script = textwrap.dedent(
        f"""
        import importlib.util, os, sys
        # The atomic writers' module alone (it imports only the standard library): no torch start-up in this child.
        spec = importlib.util.spec_from_file_location("io_utils", {str(REPO / "hf_seqrec" / "modeling" / "atomic_writes.py")!r})
        io_utils = sys.modules["io_utils"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(io_utils)
        with io_utils.atomic_path({str(path)!r}) as tmp:
            with open(tmp, "w") as handle:
                handle.write("new but torn")
                handle.flush()
                os._exit(9)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 9
    assert path.read_text() == "old"
    # What a kill leaves behind is one hidden temporary file holding the torn write, never a torn target.
    (leftover,) = _leftovers(tmp_path)
    assert leftover.startswith(".metrics.json.") and leftover.endswith(".tmp")
    assert (tmp_path / leftover).read_text() == "new but torn"


def test_atomic_files_get_ordinary_permissions(tmp_path):
    fresh = tmp_path / "fresh.json"
    write_text_atomic(fresh, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    kept = tmp_path / "kept.txt"
    kept.write_text("x")
    kept.chmod(0o640)
    write_text_atomic(kept, "y")
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "y"


def test_atomic_directory_replaces_as_a_whole_or_not_at_all(tmp_path):
    target = tmp_path / "best"
    with atomic_directory(target) as staging:
        (staging / "weights.safetensors").write_text("v1")
    assert (target / "weights.safetensors").read_text() == "v1"
    assert target.stat().st_mode & 0o777 == 0o755

    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as staging:
            (staging / "weights.safetensors").write_text("v2, half")
            raise KeyboardInterrupt
    assert [p.name for p in target.iterdir()] == ["weights.safetensors"]
    assert (target / "weights.safetensors").read_text() == "v1"
    assert _leftovers(tmp_path) == []

    with atomic_directory(target) as staging:
        (staging / "other.json").write_text("v3")
    assert [p.name for p in target.iterdir()] == ["other.json"]  # replaced, not merged
    assert _leftovers(tmp_path) == []


def test_replace_directory_moves_into_a_new_or_existing_target(tmp_path):
    source, target = tmp_path / "staging", tmp_path / "last"
    source.mkdir()
    (source / "a").write_text("1")
    replace_directory(source, target)
    assert not source.exists() and (target / "a").read_text() == "1"

    source.mkdir()
    (source / "b").write_text("2")
    replace_directory(source, target)
    assert [p.name for p in target.iterdir()] == ["b"]
    assert not (tmp_path / ".last.old").exists() and not source.exists()


def test_replace_directory_killed_between_its_renames_loses_nothing(tmp_path, monkeypatch):
    """The old copy is renamed aside first; if the process dies there, the next call puts it back first."""
    target = tmp_path / "last"
    target.mkdir()
    (target / "trainer_state.json").write_text("step 6")
    source = tmp_path / "staging"
    source.mkdir()
    (source / "trainer_state.json").write_text("step 12")

    real_replace = os.replace
    calls = []

    def die_on_second_rename(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise SystemExit("killed")
        real_replace(src, dst)

    monkeypatch.setattr(io_utils.os, "replace", die_on_second_rename)
    with pytest.raises(SystemExit):
        replace_directory(source, target)
    monkeypatch.setattr(io_utils.os, "replace", real_replace)
    assert calls == [("last", ".last.old"), ("staging", "last")]
    assert not target.exists() and (tmp_path / ".last.old" / "trainer_state.json").read_text() == "step 6"

    # Recovery alone puts the complete old copy back under its name ...
    recover_directory(target)
    assert (target / "trainer_state.json").read_text() == "step 6"
    # ... and so does the next replace, before it deletes anything.
    real_replace(target, tmp_path / ".last.old")
    replace_directory(source, target)
    assert (target / "trainer_state.json").read_text() == "step 12"
    assert _leftovers(tmp_path) == []


def test_a_stale_old_copy_next_to_a_complete_target_is_discarded(tmp_path):
    target, stale = tmp_path / "last", tmp_path / ".last.old"
    for directory, text in ((target, "new"), (stale, "old")):
        directory.mkdir()
        (directory / "f").write_text(text)
    recover_directory(target)
    assert (target / "f").read_text() == "new"  # the complete new copy wins
    source = tmp_path / "staging"
    source.mkdir()
    (source / "f").write_text("newer")
    replace_directory(source, target)
    assert (target / "f").read_text() == "newer" and not stale.exists()
