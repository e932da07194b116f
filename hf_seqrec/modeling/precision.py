"""Run a loaded next-item model in fp32, bf16 or int8 on the CPU: ``prepare_for_inference(model, precision)``.

    >>> model = SeqRecForNextItem.from_pretrained("path/to/checkpoint")
    >>> prepare_for_inference(model, "int8")          # or pipeline("next-item", model=..., precision="int8")

Checkpoints are always saved in fp32; a precision is applied to a model in memory, once, when it is
loaded for inference, and such a model refuses ``save_pretrained`` (load the fp32 checkpoint again
to get the trained weights back).

- ``"fp32"``: the model as trained, cast to float32.
- ``"bf16"``: the LoRA adapter is merged into the backbone (its extra matmuls go away and the merged
  weights are rounded once), then the backbone is cast to bfloat16. Fast on CPUs with AVX512-BF16/AMX.
- ``"int8"``: the adapter is merged, then the backbone's ``nn.Linear`` layers are replaced by
  dynamically quantized int8 linear layers (int8 weights per output channel; activations quantized
  per call at run time), except those named in :data:`INT8_KEEP_FP32` (see there why). Layers that
  are not ``nn.Linear`` (embeddings, norms, GPT-2's ``Conv1D`` in SASRec, recurrent cells) stay fp32.

In every precision the item table and the item scores stay fp32: the scores of 1,000s of items sit
close together, and rounding them (bf16 keeps 8 bits of mantissa) would create ties that the
ranking counts against the model.

This file is copied into every checkpoint next to ``next_item.py`` (which imports it), so it imports
nothing from hf_seqrec: only torch and the standard library.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "int8")
# Linear layers (by the last part of their name) that int8 leaves in fp32. Dynamic quantization gives
# a whole input tensor one int8 scale, and the inputs of these layers (an MLP's down_proj, the
# normalised input of q/k/v_proj) hold a few activations far larger than the rest, so int8 rounds
# every other activation to a handful of levels. Measured on the
# MovieLens-100K checkpoint (benchmarks/results/precision-cpu.md): quantizing every linear layer cost
# 18% of test NDCG@10 (2.4x faster than fp32); keeping these four in fp32 cost nothing (+1%, 1.6x
# faster). gate_proj, up_proj and o_proj (60% of the decoder's linear weights) are int8.
INT8_KEEP_FP32 = ("down_proj", "q_proj", "k_proj", "v_proj")
# Set on a prepared model; save_pretrained refuses a model whose precision is not fp32.
PRECISION_ATTRIBUTE = "inference_precision"


def check_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError that lists them."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(repr(p) for p in PRECISIONS)}; got {precision!r}")
    return precision


def inference_precision(model: nn.Module) -> str:
    """The precision ``model`` was prepared for ("fp32" for a model as loaded)."""
    return getattr(model, PRECISION_ATTRIBUTE, "fp32")


@torch.no_grad()
def prepare_for_inference(model: nn.Module, precision: str, *, keep_fp32: tuple[str, ...] = INT8_KEEP_FP32) -> nn.Module:
    """Convert a `SeqRecForNextItem` in place for inference at ``precision``; returns the model (in eval mode).

    Applied once: preparing a model again for the same precision does nothing, and for another one
    raises (an int8 model cannot be turned back into fp32). Runs on the CPU; int8 layers only run there.
    ``keep_fp32``: with int8, the linear layers (last part of their name) left in fp32; ``()``
    quantizes every one (faster, less accurate; see :data:`INT8_KEEP_FP32`).
    """
    precision = check_precision(precision)
    current = inference_precision(model)
    if current == precision and precision != "fp32":
        return model.eval()
    if current != "fp32":
        raise ValueError(
            f"the model was already prepared for {current} inference and cannot be converted to {precision}; "
            "load the checkpoint again (checkpoints are fp32) and prepare that"
        )
    model.eval()
    if precision == "fp32":
        model.float()
        return model
    if next(model.parameters()).device.type != "cpu":
        raise ValueError(f"precision={precision!r} prepares a model for the CPU; the model is on {next(model.parameters()).device}")
    model.float()  # merge (and quantize) from fp32 weights, whatever dtype the model was loaded in
    model.merge_adapter()  # folds a LoRA adapter into the weights; a model without one is left as it is
    if precision == "bf16":
        model.backbone.to(torch.bfloat16)
        # The item table stays fp32; the backbone gets its input embeddings in its own dtype.
        model.backbone.register_forward_pre_hook(_cast_inputs_embeds, with_kwargs=True)
    else:
        _quantize_linear_layers(model.backbone, tuple(keep_fp32))
    setattr(model, PRECISION_ATTRIBUTE, precision)
    return model


def _cast_inputs_embeds(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    embeds = kwargs.get("inputs_embeds")
    if embeds is not None and embeds.is_floating_point():
        kwargs["inputs_embeds"] = embeds.to(torch.bfloat16)
    return args, kwargs


def _quantize_linear_layers(backbone: nn.Module, keep_fp32: tuple[str, ...]) -> None:
    """Replace the ``nn.Linear`` layers of ``backbone`` (but those in ``keep_fp32``) by dynamically quantized int8 layers, in place.

    Why ``torch.ao.quantization.quantize_dynamic``: on torch 2.13 it still works and runs fbgemm /
    oneDNN int8 kernels in eager mode (the speed-up on this model is in
    benchmarks/results/precision-cpu.md), while torchao's replacement
    (``quantize_(model, Int8DynamicActivationInt8WeightConfig())``) targets ``torch.compile``. torch marks ``torch.ao.quantization`` as deprecated in favour of torchao; the
    deprecation warnings are silenced here, and a torch without it gets an error that says so.
    """
    names = [name for name, module in backbone.named_modules() if type(module) is nn.Linear and name.rsplit(".", 1)[-1] not in keep_fp32]
    if not names:
        warnings.warn(
            f"precision='int8' quantizes nn.Linear layers, and the {type(backbone).__name__} backbone has none "
            f"(other than {list(keep_fp32)}); it runs in fp32",
            UserWarning,
            stacklevel=3,
        )
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError as error:  # removed from a future torch
            raise RuntimeError(
                f"precision='int8' needs torch.ao.quantization.quantize_dynamic, which torch {torch.__version__} lacks "
                "(use precision='bf16', or a torch that still ships it)"
            ) from error
        quantize_dynamic(backbone, {name: per_channel_dynamic_qconfig for name in names}, dtype=torch.qint8, inplace=True)
