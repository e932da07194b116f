"""Shared fixtures: a small catalogue and fresh tiny models."""

from __future__ import annotations

import os

# Tests never reach the Hub; everything they load is local or built in.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

import hf_seqrec  # noqa: F401  (registers the Auto classes)
from hf_seqrec.data.catalog import ItemCatalog
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
