"""`hf_seqrec/modeling` is everything a checkpoint carries: it imports nothing of hf_seqrec outside itself,
and a saved checkpoint holds every module of it that the model code needs, the next-item pipeline included.

transformers copies a registered class's file and, recursively, its same-folder imports
(``from .x import ...``) into a checkpoint, and runs those copies for ``trust_remote_code``. A module of
the folder that imported another part of hf_seqrec would fail where hf_seqrec is not installed; a module
the model needs but does not import would not be copied.
"""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest

from hf_seqrec.modeling import next_item
from testing_utils import numbered_catalog, run_in_fresh_process, save_tiny_lm_checkpoint

ROOM = Path(next_item.__file__).resolve().parent
MODULES = sorted(path for path in ROOM.glob("*.py") if path.name != "__init__.py")
# The files transformers copies into a checkpoint: those of the classes registered for the Auto classes.
REGISTERED = ("modeling_seqrec.py", "configuration_seqrec.py")
PIPELINE = ("next_item.py", "explain.py", "precision.py", "padding.py")


def _imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, at any depth (functions, ``if TYPE_CHECKING``, ``try``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def _same_folder_imports(path: Path) -> set[str]:
    """The file names of the same-folder modules ``path`` imports (``from .x import ...``, ``from . import x``)."""
    names = set()
    for node in _imports(path):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            modules = [node.module] if node.module else [alias.name for alias in node.names]
            names |= {f"{module.split('.')[0]}.py" for module in modules}
    return names


def _needed(*names: str) -> set[str]:
    """``names`` and, recursively, every same-folder module they import: what the model code needs."""
    needed, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(_same_folder_imports(ROOM / name))
    return needed


# ----------------------------------------------------------------------------- the folder imports only itself
def test_the_folder_is_not_empty():
    assert {path.name for path in MODULES} >= {*REGISTERED, *PIPELINE}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_module_imports_hf_seqrec_outside_the_folder(path):
    offenders = []
    for node in _imports(path):
        if isinstance(node, ast.Import):
            offenders += [alias.name for alias in node.names if alias.name.split(".")[0] == "hf_seqrec"]
        elif node.level > 1 or (node.level == 0 and (node.module or "").split(".")[0] == "hf_seqrec"):
            offenders.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert offenders == []


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_every_same_folder_import_is_a_module_of_the_folder(path):
    assert {name for name in _same_folder_imports(path) if not (ROOM / name).is_file()} == set()


def test_same_folder_imports_form_no_cycle():
    """In particular the pipeline never imports the model's module, which imports the pipeline."""
    graph = {path.name: _same_folder_imports(path) for path in MODULES}
    state: dict[str, str] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", f"import cycle: {' -> '.join((*trail, name))}"
        state[name] = "open"
        for target in sorted(graph.get(name, ())):
            visit(target, (*trail, name))
        state[name] = "done"

    for name in sorted(graph):
        visit(name, ())
    assert not {"modeling_seqrec.py"} & _needed(*PIPELINE)


def test_the_model_code_imports_the_pipeline():
    """The model finds the pipeline by import, so saving the model copies it (no file path between the two)."""
    assert set(PIPELINE) <= _needed("modeling_seqrec.py")


# ----------------------------------------------------------------------------- a saved checkpoint carries the folder
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_lm_checkpoint(tmp_path_factory.mktemp("room") / "ckpt", numbered_catalog(12), max_len=8)


def _assert_carries_the_room(directory: Path) -> None:
    needed = _needed(*REGISTERED)
    carried = {path.name for path in directory.glob("*.py")}
    assert needed - carried == set(), f"{directory} lacks model code"
    for name in needed:
        assert (directory / name).read_bytes() == (ROOM / name).read_bytes(), name
    config = json.loads((directory / "config.json").read_text())
    module, _, cls = config["custom_pipelines"]["next-item"]["impl"].partition(".")
    assert (module, cls) == ("next_item", "NextItemPipeline") and f"{module}.py" in carried


def test_a_saved_checkpoint_carries_every_module_the_model_code_needs(checkpoint):
    assert set(PIPELINE) <= _needed(*REGISTERED)
    _assert_carries_the_room(checkpoint)


def test_a_remote_code_model_finds_the_pipeline_and_saves_it_again(checkpoint, tmp_path):
    """Where hf_seqrec is not imported: the checkpoint's own model module imports its own pipeline, a save
    of that model carries the code again, and the pipeline runs from the copy."""
    resaved = tmp_path / "resaved"
    script = textwrap.dedent(
        f"""
        import importlib, json, sys, warnings
        warnings.simplefilter("ignore")
        from transformers import AutoModel, pipeline
        model = AutoModel.from_pretrained({str(checkpoint)!r}, trust_remote_code=True)
        module = importlib.import_module(type(model).__module__)
        model.save_pretrained({str(resaved)!r})
        recommend = pipeline(model={str(resaved)!r}, trust_remote_code=True)
        print("RESULT" + json.dumps({{
            "model": type(model).__module__,
            "pipeline_of_model": module.NextItemPipeline.__module__,
            "pipeline": type(recommend).__module__,
            "ids": [row["item_id"] for row in recommend({{"history": ["1", "2"]}}, top_k=3)],
            "hf_seqrec": sorted(m for m in sys.modules if m.split(".")[0] == "hf_seqrec"),
        }}))
        """
    )
    out = run_in_fresh_process(script, tmp_path)
    assert out["hf_seqrec"] == []
    assert out["model"].startswith("transformers_modules.") and out["model"].endswith(".modeling_seqrec")
    assert out["pipeline_of_model"].startswith("transformers_modules.") and out["pipeline_of_model"].endswith(".next_item")
    assert out["pipeline"].endswith(".next_item") and len(out["ids"]) == 3
    _assert_carries_the_room(resaved)
