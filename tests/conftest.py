"""Shared fixtures: a small catalogue, fresh tiny models, a saved checkpoint's model and pipeline, MovieLens-100K.

Plain helpers that tests call with their own arguments are in ``testing_utils.py``.
"""

from __future__ import annotations

import os

# Tests never reach the Hub; everything they load is local or built in.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
from transformers import pipeline

import hf_seqrec  # noqa: F401  (registers the Auto classes and the "next-item" task)
from hf_seqrec.data import DataConfig, prepare_data
from hf_seqrec.modeling.item_catalog import ItemCatalog
from hf_seqrec.modeling import SeqRecForNextItem

GENRES = ["Drama", "Comedy", "Action", "Horror", "Romance"]


@pytest.fixture
def catalog() -> ItemCatalog:
    ids = [str(i) for i in range(1, 31)]
    texts = [f"Film number {i} ({1980 + i}) | {GENRES[i % len(GENRES)]}" for i in range(1, 31)]
    return ItemCatalog(ids, texts)


@pytest.fixture
def tiny_model(catalog):
    torch.manual_seed(0)
    model, tokenizer = SeqRecForNextItem.from_backbone("tiny-llama", catalog.texts, max_len=12)
    model.item_catalog = catalog
    return model, tokenizer


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine torch's spinning pool makes
    each small forward pass many times slower; one thread keeps these tests fast and steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- a saved checkpoint
# A test module that defines a `checkpoint` fixture (a saved checkpoint directory) gets these two,
# loaded once per module from that directory.
@pytest.fixture(scope="module")
def model(checkpoint):
    return SeqRecForNextItem.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def recommend(checkpoint):
    return pipeline("next-item", model=str(checkpoint))


@pytest.fixture(scope="module")
def movielens():
    """The built-in MovieLens-100K prepared with the default options, once per module."""
    return prepare_data(DataConfig(dataset="movielens-100k"))
