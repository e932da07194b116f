"""`ItemTable`: one vector per catalogue item, the input embedding of an item and (tied) its output embedding.

A module of its own so that `modeling_seqrec.py` holds the model; this file travels with every
checkpoint (a same-folder import of `modeling_seqrec.py`), so a model loaded with trust_remote_code
builds its item table the same way.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_seqrec import ITEM_SCORINGS, TEXT_DESIGNS

# How a text tower builds an item's vector (see ItemTable).
PROJECTION, BOUNDED_DELTA, NULL_SPACE, LET_IT_GO = TEXT_DESIGNS
# How an item is scored against a hidden state: the dot product, or the cosine times a learned scale.
DOT, COSINE = ITEM_SCORINGS
COSINE_START_TEMPERATURE = 0.07
# L2 penalty of the ridge regression that starts the text popularity map (standardised text features).
TEXT_OFFSET_RIDGE = 100.0


class ItemTable(nn.Module):
    """One vector per catalogue item: the input embedding of an item and, tied, its output embedding.

    A module of its own (not a bare `nn.Parameter`) so that it is trained and saved in full
    alongside a LoRA adapter, and kept outside the backbone's vocabulary so the adapter never
    has to carry the 49k-row token embedding.

    With `text_tower=True` an item's vector is `text_projection(z[i]) + weight[i]`, where `z[i]` is
    the frozen encoding of the item's text standardised per dimension with the training items' mean and
    spread (`text_mean`, `text_scale`), and `weight[i]` an ID embedding that only items seen in
    training use (`has_id_embedding`). Standardising removes the component every item's text shares,
    so the projection learns from what tells items apart. An item that training never saw, or one
    added later with :meth:`SeqRecForNextItem.add_items`, is scored from its text alone instead of
    from an untrained row. `id_dropout` leaves out whole ID embeddings during training (without
    rescaling the kept ones), so a text-only item is a state the model is trained on: a cold item
    at test time looks like a warm item whose ID was dropped.

    `text_design` says how the tower builds that vector. `"projection"` is the above. With
    `"bounded-delta"` an item's vector is its frozen content vector (the standardised text encoding,
    scaled to a fixed length) plus a trained delta whose norm is at most `delta_max` times that
    length; a cold item is its content vector. Nothing maps the text, so a new item lands exactly
    where a trained item with the same text started, and no trained item is ever far from it.
    `"null-space"` keeps the text in the subspace holding `semantic_variance` of the encodings'
    variance (whitened) and lets the deltas use only the directions the text leaves empty, so
    the ID part never overwrites what the text says (bounded by `delta_max` too, unless it is None).

    `"let-it-go"` ("Let It Go? Not Quite", RecSys 2025): an item's vector is its content vector, the
    L2-normalised standardised text encoding at length `content_norm`, plus a trained delta. The
    delta's norm is capped at `delta_max × content_norm` by :meth:`project_deltas`, which the training
    loop calls after every optimizer step (a projection of the parameters, not a clip in the forward
    pass: gradients reach a delta in full, and the stored delta is always the one used). Items
    without an ID embedding keep a zero delta. When the encodings are narrower or wider than the
    model (`text_dim`, e.g. a 384-wide sentence encoder), a learned linear map (`content_map`) takes
    the standardised encoding to the model's width before the normalisation; it starts at the
    paper's reduction, the leading principal axes of the training items' standardised encodings, so
    the first step sees the paper's content vectors, and it learns from the trained items for the
    cold ones. With `center_deltas`, every pass subtracts the trained items' mean delta from their
    deltas (see :meth:`_let_it_go_deltas`).

    Every text statistic (mean, spread, content length, null-space basis, the map's start) is fitted
    by :meth:`fit_text_statistics`; a training run fits them on the items it trains on only
    (`trainer.build_model`), so an item held out of training is treated exactly like an item added
    later with `add_items`.

    With `text_popularity=True` (and `score_bias`), an item without an ID embedding takes the score
    offset a linear map predicts from its standardised text encoding, instead of the one offset of
    an item of unknown popularity. ID dropout trains the map: an item whose ID a pass drops is
    scored with the predicted offset, so the map learns how popular items with such texts are.

    With `score_bias=True` every item also has a scalar added to its score (`bias[i]`, started at the
    item's log training frequency by :meth:`set_score_bias_from_counts`), so popularity does not
    have to be learned into the vectors. Items without an ID
    embedding get the offset of an item of unknown popularity (`unknown_item_offset`): their
    popularity is unknown, not zero. So does, for one training pass, an item whose ID embedding ID
    dropout left out (:meth:`vectors_and_offsets`): it looks like a cold item in full.
    """

    def __init__(
        self,
        num_items: int,
        hidden_size: int,
        text_tower: bool = False,
        id_dropout: float = 0.0,
        score_bias: bool = False,
        tied: bool = True,
        text_design: str = PROJECTION,
        delta_max: float | None = 0.5,
        semantic_variance: float = 0.9,
        text_popularity: bool = False,
        embedding_dim: int | None = None,
        scoring: str = DOT,
        text_dim: int | None = None,
        center_deltas: bool = False,
    ) -> None:
        super().__init__()
        if text_design not in TEXT_DESIGNS:
            raise ValueError(f"text_design must be one of {TEXT_DESIGNS}, got {text_design!r}")
        text_dim = text_dim or hidden_size
        if text_dim != hidden_size and text_design != LET_IT_GO:
            raise ValueError(f"text encodings {text_dim} wide in a {hidden_size}-wide table: only the let-it-go design maps them")
        if center_deltas and text_design != LET_IT_GO:
            raise ValueError("center_deltas applies only to the let-it-go design")
        if scoring not in ITEM_SCORINGS:
            raise ValueError(f"scoring must be one of {ITEM_SCORINGS}, got {scoring!r}")
        if embedding_dim is not None and (text_tower or not tied):
            raise ValueError("embedding_dim: a narrow item table is available only without a text tower and with a tied table")
        self.embedding_dim = embedding_dim
        self.scoring = scoring
        self.weight = nn.Parameter(torch.empty(num_items, embedding_dim or hidden_size))
        if embedding_dim is not None:
            # A narrow table with learned maps to the backbone's width: `input_map` gives the vector an item
            # enters the backbone with, `output_map` the one it is scored with. Every item row has
            # embedding_dim numbers to learn instead of hidden_size, so rare items get their few updates
            # into fewer directions, and the maps are shared by every item, popular or not.
            self.input_map = nn.Linear(embedding_dim, hidden_size)
            self.output_map = nn.Linear(embedding_dim, hidden_size, bias=False)
        if scoring == COSINE:
            # Cosine scores times a learned scale (the inverse temperature), started at 1/0.07: no item
            # outranks another by the length of its vector, which popular items grow under a dot product.
            self.log_score_scale = nn.Parameter(torch.tensor(math.log(1.0 / COSINE_START_TEMPERATURE)))
        # Untied: the scores use a second table of their own (`output_weight`), so what an item
        # means as context and what makes it a likely next item are learned apart.
        self.output_weight = None if tied else nn.Parameter(torch.empty(num_items, hidden_size))
        self.text_tower = text_tower
        self.id_dropout = id_dropout
        self.bias = nn.Parameter(torch.zeros(num_items)) if score_bias else None
        self.text_design = text_design
        self.text_popularity = text_popularity
        self.delta_max = delta_max
        self.semantic_variance = semantic_variance
        self.center_deltas = center_deltas
        # Let-it-go with encodings of another width: the learned map to the model's width (see the class docstring).
        self.content_map = nn.Linear(text_dim, hidden_size, bias=False) if text_tower and text_dim != hidden_size else None
        if text_tower:
            self.register_buffer("text_features", torch.zeros(num_items, text_dim))
            self.register_buffer("text_mean", torch.zeros(text_dim))
            self.register_buffer("text_scale", torch.ones(text_dim))
            self.register_buffer("has_id_embedding", torch.ones(num_items))
            if text_design == PROJECTION:
                self.text_projection = nn.Linear(hidden_size, hidden_size)
            else:
                # The content vectors' length: the mean norm of the raw text encodings, so they enter the
                # backbone at the scale of the embeddings it was trained on (let-it-go: set by the model, 1
                # for a from-scratch backbone as in the paper).
                self.register_buffer("content_norm", torch.ones(()))
            if text_popularity:
                if not score_bias:
                    raise ValueError("text_popularity needs score_bias=True: it predicts the score offset of items without one")
                # An item without an ID embedding takes the offset this predicts from its text.
                self.text_offset = nn.Linear(text_dim, 1)
            if text_design == NULL_SPACE:
                # Right singular vectors of the centred text encodings, their spreads, and which of
                # them carry the text (the rest are the null space the ID deltas live in).
                self.register_buffer("text_basis", torch.eye(hidden_size))
                self.register_buffer("text_spread", torch.ones(hidden_size))
                self.register_buffer("semantic_mask", torch.ones(hidden_size))
            # Derived from the frozen buffers above, so kept rather than recomputed on every forward
            # pass; not saved (rebuilt by set_text_features, append_rows and after a state dict loads).
            self.register_buffer("standardised_text", torch.zeros(num_items, text_dim), persistent=False)
            if self._content_is_frozen:
                self.register_buffer("frozen_content", torch.zeros(num_items, hidden_size), persistent=False)
            if text_design == NULL_SPACE:
                self.register_buffer("null_map", torch.zeros(hidden_size, hidden_size), persistent=False)
            self.register_load_state_dict_post_hook(lambda module, incompatible_keys: module.refresh_derived_text_buffers())
            self.refresh_derived_text_buffers()

    @property
    def num_items(self) -> int:
        return self.weight.size(0)

    @property
    def _content_is_frozen(self) -> bool:
        """Whether the content vectors are fixed between text updates (kept in `frozen_content`): every design with
        content vectors but a let-it-go table with a learned `content_map`."""
        return self.text_design != PROJECTION and self.content_map is None

    def vectors(self) -> torch.Tensor:
        """Every item's vector, `[num_items, hidden_size]` (the ID table itself without a text tower)."""
        return self._vectors(self._id_mask_for_step())

    def vectors_and_offsets(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every item's vector and score offset for one forward pass, from one ID-dropout draw.

        An item whose ID embedding is dropped in this pass also takes the offset of an unknown item
        (see :meth:`score_bias`): with both, it looks exactly like a cold item at test time, which
        is what ID dropout trains for. Separate calls to :meth:`vectors` and :meth:`score_bias`
        cannot give that: each would see its own draw, or none.
        """
        uses_id = self._id_mask_for_step()
        return self._vectors(uses_id), self._offsets(uses_id)

    def _id_mask_for_step(self) -> torch.Tensor | None:
        """1 for the items whose ID embedding this pass uses (ID dropout applied in training); None without a text tower."""
        if not self.text_tower:
            return None
        uses_id = self.has_id_embedding
        if self.training and self.id_dropout > 0:
            # Not rescaled: a kept ID embedding is the same at training and test time.
            uses_id = uses_id * (torch.rand_like(uses_id) >= self.id_dropout).to(uses_id.dtype)
        return uses_id

    def _vectors(self, uses_id: torch.Tensor | None) -> torch.Tensor:
        if uses_id is None:
            return self.weight if self.embedding_dim is None else self.input_map(self.weight)
        if self.text_design == PROJECTION:
            text_part = self.text_projection(self.standardised_text.to(self.text_projection.weight.dtype))
            return text_part + self.weight * uses_id.to(self.weight.dtype).unsqueeze(1)
        if self.text_design == LET_IT_GO:
            content = self.frozen_content if self.content_map is None else self.content_vectors()
            return content.to(self.weight.dtype) + self._let_it_go_deltas() * uses_id.to(self.weight.dtype).unsqueeze(1)
        return self.frozen_content.to(self.weight.dtype) + self.bounded_deltas() * uses_id.to(self.weight.dtype).unsqueeze(1)

    def _let_it_go_deltas(self) -> torch.Tensor:
        """The let-it-go deltas as stored (capped by :meth:`project_deltas`), centred when `center_deltas` is set.

        Centring subtracts the mean delta of the items with an ID embedding, in training and scoring
        alike, so the model is trained with the vectors it is scored with. A direction shared by every
        trained delta would otherwise lift every trained item above every item without a delta (cold,
        added later) for any hidden state that leans that way; centred, the deltas carry only what
        tells trained items apart, and the gradient's shared part is removed as well. Chosen over a
        penalty on the mean delta: nothing to tune, and the shared direction is gone rather than discouraged.
        """
        if not self.center_deltas:
            return self.weight
        trained = self.has_id_embedding.to(self.weight.dtype).unsqueeze(1)
        mean = (self.weight * trained).sum(0) / trained.sum().clamp(min=1.0)
        return self.weight - mean

    def content_vectors(self) -> torch.Tensor:
        """`[num_items, hidden]`: each item's content vector (bounded-delta, null-space and let-it-go designs).

        The forward pass reads the kept copy (`frozen_content`) where the content is frozen; this computes it.

        `bounded-delta` and `let-it-go`: the standardised text encoding scaled to `content_norm`
        (let-it-go with `content_map`: the map of it, differentiable, as the map learns). `null-space`:
        its whitened component in the subspace that holds `semantic_variance` of the text encodings'
        variance, scaled the same way. Unit direction times a fixed length: every item, trained or
        not, sits on the same sphere, so a new item is as reachable as a trained one.
        """
        if self.text_design == NULL_SPACE:
            # One [hidden, hidden] map (whiten, keep the text subspace, map back), then one product with
            # the catalogue: the map costs hidden**3, the catalogue product num_items * hidden**2.
            semantic_map = (self.text_basis * (self.semantic_mask / self.text_spread)) @ self.text_basis.T
            direction = (self.text_features - self.text_mean) @ semantic_map
        elif self.content_map is not None:
            direction = self.content_map(self.standardised_text.to(self.content_map.weight.dtype))
        else:
            direction = self.standardised_text
        return F.normalize(direction, dim=1) * self.content_norm

    @torch.no_grad()
    def refresh_derived_text_buffers(self) -> None:
        """Recompute what the frozen text buffers determine: standardised encodings, content vectors, the null-space map.

        Done by every method that changes those buffers and after a state dict loads; code that edits
        a text buffer in place calls it too.
        """
        self.standardised_text = (self.text_features - self.text_mean) / self.text_scale
        if self._content_is_frozen:
            self.frozen_content = self.content_vectors()
        if self.text_design == NULL_SPACE:
            self.null_map = (self.text_basis * (1.0 - self.semantic_mask)) @ self.text_basis.T

    def bounded_deltas(self) -> torch.Tensor:
        """`[num_items, hidden]`: the trained per-item corrections, each no longer than `delta_max` × `content_norm`.

        The bound keeps a trained item within a fixed angle of its content vector (cosine at least
        `sqrt(1 - delta_max**2)`), so trained items cannot drift into regions no cold item reaches.
        The null-space design first projects each delta onto the directions the text does not use.
        """
        delta = self.weight
        if self.text_design == NULL_SPACE:
            delta = delta @ self.null_map.to(delta.dtype)
        if self.delta_max is None:
            return delta
        limit = self.delta_max * self.content_norm.to(delta.dtype)
        norms = delta.norm(dim=1, keepdim=True)
        return delta * torch.clamp(limit / norms.clamp(min=1e-12), max=1.0)

    @torch.no_grad()
    def project_deltas(self) -> None:
        """Let-it-go: cap every trained delta's norm at `delta_max × content_norm` and zero the deltas of items without an ID embedding.

        The training loop calls it after every optimizer step (`trainer.build_optimizer` hooks it onto
        the optimizer), so the stored deltas always satisfy the bound: what a checkpoint saves, a resume
        restores and the forward pass reads is the projected delta. A no-op for the other designs.
        """
        if not self.text_tower or self.text_design != LET_IT_GO:
            return
        limit = self.delta_max * self.content_norm.to(self.weight.dtype)
        norms = self.weight.norm(dim=1, keepdim=True)
        keep = self.has_id_embedding.to(self.weight.dtype).unsqueeze(1)
        self.weight.mul_(torch.clamp(limit / norms.clamp(min=1e-12), max=1.0) * keep)

    @torch.no_grad()
    def set_content_norm(self, length: float) -> None:
        """Let-it-go: the length of every content vector (the scale the backbone reads its inputs at); the delta cap scales with it."""
        if self.text_design != LET_IT_GO:
            raise ValueError("set_content_norm: only the let-it-go design takes its content length from the model")
        self.content_norm.fill_(float(length))
        self.refresh_derived_text_buffers()

    @torch.no_grad()
    def set_text_features(self, encodings: torch.Tensor) -> None:
        """Store every item's text encoding and fit the text statistics on all of them (:meth:`fit_text_statistics`).

        A training run then refits the statistics on the items training sees (`trainer.build_model`).
        """
        self.text_features.copy_(encodings.to(self.text_features))
        self.fit_text_statistics()

    @torch.no_grad()
    def fit_text_statistics(self, item_indices: Sequence[int] | None = None) -> None:
        """Fit every text statistic on the encodings of `item_indices` (all items when None) and restart what depends on them.

        The statistics (standardisation mean and spread; the content length of bounded-delta and
        null-space; the null-space basis; let-it-go's starting map) stay fixed afterwards. Fitted on
        the items training sees, an item held out of training contributes nothing, exactly like an
        item added later, so the two get the same vector. With the projection at `diag(scale)` and bias
        `mean`, every item's vector starts as its raw text encoding: where an ID-only table initialised
        from text starts. Call it before training: it restarts the projection and the map.
        """
        rows = self.text_features if item_indices is None else self.text_features[torch.as_tensor(list(item_indices), dtype=torch.long)]
        if rows.size(0) == 0:
            raise ValueError("fit_text_statistics: no items to fit the text statistics on")
        self.text_mean.copy_(rows.mean(0))
        self.text_scale.copy_(rows.std(0).clamp(min=1e-6) if rows.size(0) > 1 else torch.ones_like(self.text_scale))
        if self.text_design == PROJECTION:
            self.text_projection.weight.copy_(torch.diag(self.text_scale))
            self.text_projection.bias.copy_(self.text_mean)
        elif self.text_design in (BOUNDED_DELTA, NULL_SPACE):
            self.content_norm.copy_(rows.norm(dim=1).mean())
        if self.text_design == NULL_SPACE:
            self._fit_null_space(rows)
        if self.content_map is not None:
            self._start_content_map((rows - self.text_mean) / self.text_scale)
        self.refresh_derived_text_buffers()

    def _fit_null_space(self, rows: torch.Tensor) -> None:
        """The null-space design's basis: right singular vectors of the centred encodings, their spreads, the kept ones."""
        centred = (rows - self.text_mean).double()
        _, singular, basis_t = torch.linalg.svd(centred, full_matrices=True)
        spread = torch.zeros(rows.size(1), dtype=torch.float64)
        spread[: singular.numel()] = singular / max(rows.size(0) - 1, 1) ** 0.5
        share = torch.cumsum(spread**2, 0) / (spread**2).sum().clamp(min=1e-30)
        kept = int(torch.searchsorted(share, torch.tensor(self.semantic_variance, dtype=torch.float64)).item()) + 1
        self.text_basis.copy_(basis_t.T.to(self.text_basis))
        self.text_spread.copy_(spread.clamp(min=1e-6).to(self.text_spread))
        self.semantic_mask.copy_((torch.arange(spread.numel()) < kept).to(self.semantic_mask))

    def _start_content_map(self, standardised: torch.Tensor) -> None:
        """Start let-it-go's map at the paper's reduction (standardise, then PCA to the model's width).

        Its rows are the leading principal axes of the training items' standardised encodings (as many
        as the model is wide, or as there are); a map to a wider model leaves the remaining rows zero.
        """
        centred = standardised.double() - standardised.double().mean(0)
        _, _, basis_t = torch.linalg.svd(centred, full_matrices=False)
        weight = torch.zeros_like(self.content_map.weight, dtype=torch.float64)
        kept = min(weight.size(0), basis_t.size(0))
        weight[:kept] = basis_t[:kept]
        self.content_map.weight.copy_(weight.to(self.content_map.weight))

    def output_vectors(self, input_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """The vectors items are scored with: the input vectors when tied (pass them to reuse a step's table)."""
        if self.output_weight is not None:
            return self.output_weight
        if self.embedding_dim is not None:
            return self.output_map(self.weight)
        return self.vectors() if input_vectors is None else input_vectors

    def score_scale(self) -> torch.Tensor | None:
        """With cosine scoring, the learned factor cosines are multiplied by (1 / temperature); `None` for dot products."""
        return self.log_score_scale.exp() if self.scoring == COSINE else None

    @torch.no_grad()
    def set_narrow_rows_from_encodings(self, encodings: torch.Tensor) -> None:
        """Start a narrow table (`embedding_dim`) at the principal components of the items' text encodings.

        The rows become the encodings' coordinates on their `embedding_dim` leading principal axes, the
        input map those axes plus the encodings' mean, and the output map the axes: at the start an item
        enters the backbone as (nearly) its full text encoding and is scored with its centred one, so the
        narrow table begins where the full-width table initialised from text begins, less the smallest
        directions of variation.
        """
        encodings = encodings.to(torch.float64)
        mean = encodings.mean(0)
        _, _, basis_t = torch.linalg.svd(encodings - mean, full_matrices=False)
        axes = basis_t[: self.embedding_dim]  # [d, hidden]
        if axes.size(0) < self.embedding_dim:  # fewer items than dims: pad with zero axes
            axes = torch.cat([axes, axes.new_zeros(self.embedding_dim - axes.size(0), axes.size(1))])
        self.weight.copy_(((encodings - mean) @ axes.T).to(self.weight))
        self.input_map.weight.copy_(axes.T.to(self.input_map.weight))
        self.input_map.bias.copy_(mean.to(self.input_map.bias))
        self.output_map.weight.copy_(axes.T.to(self.output_map.weight))

    @torch.no_grad()
    def narrow_rows_for(self, encodings: torch.Tensor) -> torch.Tensor:
        """Rows of a narrow table for new items: the least-squares preimage of their encodings under the input map."""
        target = (encodings.to(self.input_map.weight) - self.input_map.bias).T  # [hidden, n]
        return torch.linalg.lstsq(self.input_map.weight.float(), target.float()).solution.T.to(self.weight)

    def score_bias(self) -> torch.Tensor | None:
        """Each item's score offset, `[num_items]`, or `None` without `score_bias`; no ID dropout.

        With a text tower, an item without an ID embedding (never seen in training, or added later)
        takes :func:`unknown_item_offset` of the items that have one; detached, so these stand-ins
        do not pull the trained offsets down as never-chosen negatives. A training pass takes its
        offsets from :meth:`vectors_and_offsets`, where dropped IDs count as missing too.
        """
        return self._offsets(self.has_id_embedding if self.text_tower else None)

    def _offsets(self, uses_id: torch.Tensor | None) -> torch.Tensor | None:
        """The offsets when only the items in `uses_id` count as known (the unknown offset still comes from every item with an ID)."""
        if self.bias is None or uses_id is None:
            return self.bias
        if self.text_popularity:
            # Trained through the items whose ID this pass drops: the offset an item's text predicts.
            predicted = self.text_offset(self.standardised_text.to(self.text_offset.weight.dtype)).squeeze(-1)
            return torch.where(uses_id.bool(), self.bias, predicted.to(self.bias.dtype))
        has_id = self.has_id_embedding.bool()
        if not bool(has_id.any()):
            return self.bias
        return torch.where(uses_id.bool(), self.bias, unknown_item_offset(self.bias[has_id]).detach())

    def untrained_items_left_out(self, offsets: torch.Tensor | None) -> torch.Tensor | None:
        """The offsets for the training loss: with a text tower, items without an ID embedding get -inf.

        An item training never sees is never a positive; left in the softmax it is only ever a
        negative, and the backbone learns to point away from its text, the one thing that places it
        once it is recommended. So the loss ranks the items training knows, and such items (cold,
        or listed in the item file without interactions) are scored only at inference.
        """
        if not self.text_tower or bool(self.has_id_embedding.bool().all()):
            return offsets
        left_out = torch.where(self.has_id_embedding.bool(), 0.0, float("-inf")).to(self.has_id_embedding.device)
        return left_out if offsets is None else offsets.float() + left_out

    @torch.no_grad()
    def set_score_bias_from_counts(self, counts: Sequence[int]) -> None:
        """Start each item's offset at the log of its smoothed training frequency (centred).

        The offset learns at the item table's rate, about 1e-3 per step, while log-frequencies span
        several nats: from zero it would take many epochs to learn what counting gives at once. So
        the model starts as the popularity ranking plus the backbone's scores.
        """
        if self.bias is None:
            raise ValueError("set_score_bias_from_counts needs an item table built with score_bias=True")
        if len(counts) != self.num_items:
            raise ValueError(f"got {len(counts)} item counts for an item table of {self.num_items} rows")
        log_frequency = torch.log(torch.as_tensor(counts, dtype=torch.float32) + 1.0)
        self.bias.copy_((log_frequency - log_frequency.mean()).to(self.bias))
        if self.text_popularity:
            self._fit_text_offset(torch.as_tensor(counts) > 0)

    @torch.no_grad()
    def _fit_text_offset(self, known: torch.Tensor) -> None:
        """Start the text popularity map as a ridge regression of the known items' offsets on their text.

        Trained from zero through ID dropout alone, at the fan-in-scaled rate a 576-wide map needs,
        it would barely move in an epoch; the closed-form fit starts it at what the training counts
        already say about how popular items with such texts are. The intercept is shifted so the
        mean prediction equals the offset of an item of unknown popularity (log-mean-exp of the known
        offsets), where an item without a text signal would sit.
        """
        if not bool(known.any()):
            nn.init.zeros_(self.text_offset.weight)
            self.text_offset.bias.fill_(float(unknown_item_offset(self.bias)))
            return
        features = self.standardised_text[known].double()
        targets = self.bias[known].double()
        centred = features - features.mean(0)
        gram = centred.T @ centred + TEXT_OFFSET_RIDGE * torch.eye(features.size(1), dtype=torch.float64)
        weight = torch.linalg.solve(gram, centred.T @ (targets - targets.mean()))
        predicted_mean = float(features.mean(0) @ weight)
        self.text_offset.weight.copy_(weight.to(self.text_offset.weight).unsqueeze(0))
        self.text_offset.bias.fill_(float(unknown_item_offset(self.bias[known])) - predicted_mean)

    def forward(self, item_ids: torch.LongTensor, table: torch.Tensor | None = None) -> torch.Tensor:
        return F.embedding(item_ids, self.vectors() if table is None else table)

    def set_items_with_id_embedding(self, item_indices: Sequence[int]) -> None:
        """Only these items use their ID embedding (the ones training sees); the rest are scored from text."""
        if not self.text_tower:
            raise ValueError("only an item table with a text tower tells items with and without ID embeddings apart")
        mask = torch.zeros_like(self.has_id_embedding)
        if len(item_indices):
            mask[torch.as_tensor(list(item_indices), dtype=torch.long, device=mask.device)] = 1.0
        self.has_id_embedding.copy_(mask)

    @torch.no_grad()
    def append_rows(self, text_features: torch.Tensor) -> None:
        """Grow the table by one row per new item: text features only, no ID embedding (the item was never trained)."""
        added = text_features.size(0)
        weight = self.weight.detach()
        # Without a text tower the new rows hold the text encoding itself, as every row did before training
        # (in a narrow table: the row the input map takes to it).
        new_rows = weight.new_zeros(added, weight.size(1)) if self.text_tower else text_features
        if self.embedding_dim is not None:
            new_rows = self.narrow_rows_for(text_features)
        self.weight = nn.Parameter(torch.cat([weight, new_rows.to(weight)]), requires_grad=self.weight.requires_grad)
        if self.output_weight is not None:
            output = self.output_weight.detach()
            self.output_weight = nn.Parameter(torch.cat([output, new_rows.to(output)]), requires_grad=self.output_weight.requires_grad)
        if self.bias is not None:
            # Without a text tower a new item's offset is fixed here (with one, score_bias() imputes it).
            fill = 0.0 if self.text_tower else float(unknown_item_offset(self.bias.detach()))
            bias = self.bias.detach()
            self.bias = nn.Parameter(torch.cat([bias, bias.new_full((added,), fill)]), requires_grad=self.bias.requires_grad)
        if self.text_tower:
            self.text_features = torch.cat([self.text_features, text_features.to(self.text_features)])
            self.has_id_embedding = torch.cat([self.has_id_embedding, self.has_id_embedding.new_zeros(added)])
            self.refresh_derived_text_buffers()


def unknown_item_offset(offsets: torch.Tensor) -> torch.Tensor:
    """The score offset of an item whose popularity is unknown: the log of the mean of `exp(offsets)`.

    An offset acts on the softmax through `exp`, so an item drawn at random from the catalogue has,
    in expectation, `mean(exp(offset))` of probability mass. Taking the mean of the offsets instead
    would rank a new item like a typical long-tail item, far below where a random item's share of
    interactions puts it.
    """
    return torch.logsumexp(offsets.float(), dim=0) - math.log(offsets.numel())
