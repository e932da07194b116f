"""Item text in the input sequence (`input_mode="id+text"`): the most recent items are read as words too.

With `input_mode="id"` the backbone reads one position per item: its vector from the item table.
With `"id+text"` each of the most recent `text_items_in_context` items of a sequence is read as its
item vector followed by the backbone's own token embeddings of the item's text (at most
`item_text_max_tokens` tokens, no special tokens), so the LM reads "Toy Story (1995) | Animation" in
words where it matters most: the items the next one is chosen after. Older items stay one position
each, so a sequence of `max_len` items is at most `max_len + text_items_in_context * item_text_max_tokens`
positions long.

The expansion happens inside the model, so the collator, the evaluator and the pipeline still pass
`[batch, items]` tensors: :meth:`ItemTextInputs.layout` places every item and text token in the
expanded sequence, :meth:`ItemTextInputs.expand` fills it, and :func:`gather_item_states` takes the
backbone's hidden state at each item's last position (its last text token, or the item itself), which
is where the next item is predicted from. Everything after that (labels, loss, the logits at the last
real item) sees one hidden state per item, as with `"id"`.

This file travels with every checkpoint (a same-folder import of `modeling_seqrec.py`), so a model
loaded with `trust_remote_code` expands its inputs the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file
from torch import nn

from .atomic_writes import save_safetensors_atomic
from .checkpoint_files import ITEM_TEXT_TOKENS_FILE


@dataclass
class ExpandedLayout:
    """Where every item and text token of a `[batch, items]` batch sits in the expanded sequence.

    Attributes:
        source: `[batch, width]`, for each expanded position the row of the values that
            :meth:`ItemTextInputs.expand` stacks: `b * items + j` for item `j` of row `b`, then
            `batch * items + m` for the `m`-th text token, and one last row (zeros) for padding.
        attention_mask: `[batch, width]`, 1 for real positions (items and text tokens), right-padded.
        last_positions: `[batch, items]`, the expanded position of each item's last token (the item
            itself when it has no text in context); padding items point at a real position of their row.
        text_token_ids: `[num_text_tokens]`, the vocabulary ids of the text tokens, in value-row order.
    """

    source: torch.LongTensor
    attention_mask: torch.LongTensor
    last_positions: torch.LongTensor
    text_token_ids: torch.LongTensor


def tokenize_item_texts(texts: Sequence[str], tokenizer: Any, max_tokens: int) -> tuple[torch.LongTensor, torch.LongTensor]:
    """`[len(texts), max_tokens]` token ids (zero-padded) and `[len(texts)]` lengths: each text's first `max_tokens` tokens.

    No special tokens: an item's text sits inside a sequence, it does not start a document. The
    first tokens are kept, since item texts put the title first ("Toy Story (1995) | Animation").
    """
    if tokenizer is None:
        raise ValueError("input_mode='id+text' reads item texts with the backbone's tokenizer, and this backbone has none")
    texts = list(texts)
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"item text of row {row}: expected a string, got {type(text).__name__}")
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    token_ids = torch.zeros(len(texts), max_tokens, dtype=torch.long)
    lengths = torch.zeros(len(texts), dtype=torch.long)
    for row, tokens in enumerate(encoded):
        tokens = list(tokens)[:max_tokens]
        if tokens:
            token_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        lengths[row] = len(tokens)
    return token_ids, lengths


class ItemTextInputs(nn.Module):
    """Every item's text as token ids, and the expansion of item sequences into items followed by their text.

    The token ids are buffers (they move with the model between devices) kept out of the state dict:
    they are not weights, and a checkpoint stores them in a file of their own
    (`item_text_tokens.safetensors`, see :meth:`save` and :meth:`load`).
    """

    def __init__(self, num_items: int, max_tokens: int, items_in_context: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.items_in_context = items_in_context
        self.register_buffer("token_ids", torch.zeros(num_items, max_tokens, dtype=torch.long), persistent=False)
        self.register_buffer("lengths", torch.zeros(num_items, dtype=torch.long), persistent=False)
        self.is_set = False  # True once texts were tokenised or loaded; forward refuses to run before

    @property
    def num_items(self) -> int:
        return self.token_ids.size(0)

    @torch.no_grad()
    def set_texts(self, texts: Sequence[str], tokenizer: Any) -> None:
        """Tokenise every catalogue item's text (row `i` of the item table is `texts[i]`)."""
        if len(texts) != self.num_items:
            raise ValueError(f"got {len(texts)} item texts for an item table of {self.num_items} rows")
        token_ids, lengths = tokenize_item_texts(texts, tokenizer, self.max_tokens)
        self.token_ids = token_ids.to(self.token_ids.device)
        self.lengths = lengths.to(self.lengths.device)
        self.is_set = True

    @torch.no_grad()
    def append_texts(self, texts: Sequence[str], tokenizer: Any) -> None:
        """Tokenise the texts of items appended to the item table (rows `num_items`, `num_items + 1`, ...)."""
        token_ids, lengths = tokenize_item_texts(texts, tokenizer, self.max_tokens)
        self.token_ids = torch.cat([self.token_ids, token_ids.to(self.token_ids.device)])
        self.lengths = torch.cat([self.lengths, lengths.to(self.lengths.device)])

    def save(self, directory: str | os.PathLike) -> None:
        """Write the token ids and lengths to `directory/item_text_tokens.safetensors` (atomically)."""
        save_safetensors_atomic(
            {"token_ids": self.token_ids.detach().cpu().contiguous(), "lengths": self.lengths.detach().cpu().contiguous()},
            Path(directory) / ITEM_TEXT_TOKENS_FILE,
            metadata={"max_tokens": str(self.max_tokens)},
        )

    @torch.no_grad()
    def load(self, directory: str | os.PathLike) -> None:
        """Read what :meth:`save` wrote; the file must match the item table and `item_text_max_tokens`."""
        path = Path(directory) / ITEM_TEXT_TOKENS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; an input_mode='id+text' checkpoint keeps its items' text tokens there")
        state = load_file(path)
        if set(state) != {"token_ids", "lengths"}:
            raise ValueError(f"{path}: expected the tensors 'token_ids' and 'lengths', found {sorted(state)}")
        token_ids, lengths = state["token_ids"], state["lengths"]
        expected = (self.num_items, self.max_tokens)
        if tuple(token_ids.shape) != expected or tuple(lengths.shape) != (self.num_items,):
            raise ValueError(
                f"{path}: token_ids of shape {tuple(token_ids.shape)} and lengths of shape {tuple(lengths.shape)} do not fit "
                f"config.json (num_items={self.num_items}, item_text_max_tokens={self.max_tokens}); expected {expected} and ({self.num_items},)"
            )
        self.token_ids = token_ids.long().to(self.token_ids.device)
        self.lengths = lengths.long().to(self.lengths.device)
        self.is_set = True

    def layout(self, input_item_ids: torch.LongTensor, attention_mask: torch.Tensor) -> ExpandedLayout:
        """Place each item, and the text tokens of the `items_in_context` most recent real items, in one sequence.

        Vectorised over the batch: an item's span is 1 position plus its text length when it is
        recent (0 for padding), the cumulative sum of the spans gives each item's last position,
        and the text tokens follow their item. Padding items take no position, so the expanded
        sequence is packed and right-padded whatever the input padding was.
        """
        if not self.is_set:
            raise ValueError(
                "input_mode='id+text' needs every item's text tokens: call model.set_item_text_tokens(texts, tokenizer) "
                "(from_pretrained loads them from item_text_tokens.safetensors)"
            )
        batch, items = input_item_ids.shape
        device = input_item_ids.device
        real = attention_mask.bool()
        # Real items counted from the end of each row: 1 for the most recent one.
        from_end = real.long().flip(1).cumsum(1).flip(1)
        recent = real & (from_end <= self.items_in_context)
        text_lengths = torch.where(recent, self.lengths[input_item_ids], torch.zeros_like(input_item_ids))
        spans = real.long() + text_lengths
        ends = spans.cumsum(1) - 1  # each item's last position (its last text token, or the item itself)
        starts = ends - text_lengths  # each item's own position
        totals = spans.sum(1)
        width = max(int(totals.max()) if batch else 0, 1)

        # Text tokens: one value row for each (row b, item j, token k) with k < its text length.
        token_slots = torch.arange(self.max_tokens, device=device)
        has_token = token_slots.view(1, 1, -1) < text_lengths.unsqueeze(-1)
        token_b, token_j, token_k = has_token.nonzero(as_tuple=True)
        num_tokens = token_b.numel()
        text_token_ids = self.token_ids[input_item_ids[token_b, token_j], token_k]

        padding_row = batch * items + num_tokens
        source = torch.full((batch, width), padding_row, dtype=torch.long, device=device)
        item_b, item_j = real.nonzero(as_tuple=True)
        source[item_b, starts[item_b, item_j]] = item_b * items + item_j
        source[token_b, starts[token_b, token_j] + 1 + token_k] = batch * items + torch.arange(num_tokens, device=device)
        positions = torch.arange(width, device=device)
        expanded_mask = (positions.unsqueeze(0) < totals.unsqueeze(1)).to(attention_mask.dtype)
        return ExpandedLayout(source, expanded_mask, ends.clamp(min=0), text_token_ids)

    def expand(self, item_embeds: torch.Tensor, token_embedding: nn.Module, layout: ExpandedLayout) -> torch.Tensor:
        """`[batch, width, hidden]` inputs: item vectors and the (frozen) token embeddings of their text, per `layout`."""
        batch, items, hidden = item_embeds.shape
        text_embeds = token_embedding(layout.text_token_ids).to(item_embeds.dtype)
        values = torch.cat([item_embeds.reshape(batch * items, hidden), text_embeds, item_embeds.new_zeros(1, hidden)])
        return values[layout.source]


def gather_item_states(hidden_states: torch.Tensor, last_positions: torch.LongTensor) -> torch.Tensor:
    """`[batch, items, hidden]`: the expanded sequence's hidden state at each item's last position."""
    index = last_positions.unsqueeze(-1).expand(-1, -1, hidden_states.size(-1))
    return hidden_states.gather(1, index)
