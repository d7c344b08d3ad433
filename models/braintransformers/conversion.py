r"""`convert`: a Hugging Face Llama or Qwen2 causal LM -> `BTSpikingForCausalLM` (paper 3.3.2).

Conversion keeps every weight and bias and changes nothing the ANN computes
in exact arithmetic; with ``operators="float"`` the converted model is the
ANN (up to float rounding). What it adds, so that EI_IF neurons with few time
steps lose as little as possible:

1. **Norm folding** (``rotate=True``): each RMSNorm's weight $g$ moves into
   the linear layers that read the norm, $W \leftarrow W\,\mathrm{diag}(g)$.
2. **Residual rotation** (``rotate=True``): a random orthogonal $R$ turns
   the residual stream $h$ into $h R$: the embedding becomes $E R$, layers
   that read the stream $W R$, layers that write it $R^\top W$ (bias
   $R^\top b$). RMSNorm without weight commutes with $R$. Outlier channels of
   $h$ are spread over all channels, so the per-token scales of the EI_IF
   encoders are no longer set by a few channels. Tied embeddings are untied:
   the embedding becomes $E R$ and ``lm_head`` $E\,\mathrm{diag}(g) R$ (a
   second ``vocab x hidden`` matrix; ``head="untied"``). With a final mixer they
   stay tied and the model gains a ``hidden x hidden`` layer $M = R^\top
   \mathrm{diag}(g) R$ before ``lm_head`` instead: ``head="float-mixer"``
   multiplies by $M$ in float and encodes the result once (the ANN's memory,
   $h^2$ multiply-accumulates per token); ``head="factored"`` encodes the
   head's input once and computes the untied head's $E\,\mathrm{diag}(g) R =
   (E R) M$ as $E R\,(M \hat x)$ (the same synapses, the ANN's memory);
   ``head="spiking-mixer"``
   (``final_mixer=True``) makes $M$ a Synapsis, whose input is encoded too.
3. **Head rotations**: values are rotated per head by a Walsh-Hadamard matrix
   $H$ (folded into ``v_proj`` and ``o_proj``); queries and keys by the same
   $H$ after RoPE and the MLP's down-projection input by block Hadamard
   transforms the model applies as it runs (additions and subtractions).
4. **Group scales**: the linear layers' encoders use one scale per token
   and per group of ``group_size`` input channels (default: the head
   dimension), so a group's few large values do not coarsen the others.
5. **Calibration**: on the user's text, each encoder's clip ratio ``c``
   (per-token scale ``c max|x| / T``) is chosen from a grid to minimise the
   squared error of that operator's output, layer after layer (so each sees
   the errors of the ones before it). Scales stay per token: no sequence in a
   batch changes another's output.

Nothing is downloaded: ``model_or_path`` is a model in memory, a local
folder (``gguf_file=`` for a GGUF checkpoint in it) or a local ``.gguf`` file.
With ``progress=True`` the folding and the calibration show progress bars
(tqdm, on stderr).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from bt_neurons import _checks

from .. import _transformers  # noqa: F401  (must precede the transformers imports)
from .._calibration import DEFAULT_CLIP_GRID, register_clip_search
from .configuration import BTSpikingConfig, operator_modes
from .modeling import BTSpikingForCausalLM
from .rotation import hadamard_matrix, largest_power_of_two_block, random_orthogonal

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["SUPPORTED_ARCHITECTURES", "calibrate", "convert", "load_source"]

#: ``config.model_type`` values `convert` accepts.
SUPPORTED_ARCHITECTURES = ("llama", "qwen2")

#: Clip ratios tried by `calibrate`.


def load_source(path: str | os.PathLike, gguf_file: str | None = None):
    """Load a local Hugging Face causal LM and its tokenizer (no download).

    ``path`` is a checkpoint folder (``gguf_file``: the GGUF file in it) or a
    ``.gguf`` file. Returns ``(model, tokenizer)``; ``tokenizer`` is None when
    the folder has none.

    Weights are read from safetensors or GGUF only: a folder whose weights are
    a pickle (``pytorch_model.bin``, ...) is refused without opening it, and a
    checkpoint that lacks weights of its model (which transformers would fill
    with random values) is refused too.

    Raises:
        FileNotFoundError: ``path`` or ``gguf_file`` does not exist.
        ValueError: a broken, incomplete or pickled checkpoint (the message names it).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = os.fspath(path)
    if gguf_file is None and folder.endswith(".gguf") and os.path.isfile(folder):
        folder, gguf_file = os.path.split(os.path.abspath(folder))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "is not a folder: it does not exist"
        raise FileNotFoundError(
            f"model_or_path must be a model, a local checkpoint folder or a .gguf file; {folder!r} {what}"
        )
    if gguf_file is not None and not os.path.isfile(os.path.join(folder, gguf_file)):
        raise FileNotFoundError(f"gguf_file {gguf_file!r} is not in {folder!r}")
    kwargs = {"local_files_only": True}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
        where = os.path.join(folder, gguf_file)
    else:
        _check_safetensors_checkpoint(folder)
        where = folder
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=torch.float32,
            output_loading_info=True,
            **kwargs,
            **({} if gguf_file is not None else {"use_safetensors": True}),
        )
    except FileNotFoundError:
        raise
    except Exception as exc:  # a broken file surfaces as many kinds of error, deep inside transformers
        raise ValueError(f"cannot load the checkpoint {where!r}: {type(exc).__name__}: {exc}") from exc
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    lost = [k for k in (info.get("missing_keys") or ()) if not (tied and k == "lm_head.weight")]
    lost += [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()]
    if lost:
        raise ValueError(
            f"the checkpoint {where!r} lacks {len(lost)} weight(s) of its model (or has them in other "
            f"shapes), e.g. {sorted(lost)[0]!r}: transformers would fill them with random values"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    except Exception:  # no tokenizer, or one transformers cannot read: conversion works without
        tokenizer = None
    return model, tokenizer


def _check_safetensors_checkpoint(folder: str) -> None:
    """A transformers folder must hold its weights as safetensors: a pickle is refused, never opened."""
    from ._model_files import PICKLE_SUFFIXES

    names = os.listdir(folder)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"{folder!r} has no config.json: expected a Hugging Face checkpoint folder")
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ValueError(
            f"{folder!r} holds its weights as {pickles[0]}, a pickle file: bt-neurons never unpickles a file "
            "it is handed (convert it to safetensors, or use its .gguf)"
        )
    raise FileNotFoundError(f"{folder!r} has no weights (*.safetensors)")


def _check_source(model: nn.Module) -> None:
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"cannot convert a {type(model).__name__} (model_type {kind!r}): supported architectures are "
            f"{', '.join(SUPPORTED_ARCHITECTURES)} (LlamaForCausalLM, Qwen2ForCausalLM)"
        )
    if not hasattr(model, "lm_head") or not hasattr(getattr(model, "model", None), "layers"):
        raise ValueError(
            f"model must be a causal LM with .model.layers and .lm_head, got {type(model).__name__}"
        )
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise ValueError(f"only SiLU-gated MLPs are supported, the model uses {cfg.hidden_act!r}")
    if kind == "qwen2" and getattr(cfg, "use_sliding_window", False):
        raise ValueError("Qwen2 models with sliding-window attention are not supported")
    if getattr(cfg, "pretraining_tp", 1) not in (None, 1):
        raise ValueError("pretraining_tp > 1 is not supported")


def _group_size(cfg, head_dim: int, group_size: int | None) -> int:
    """The encoder group size: ``group_size``, or (None) the head dimension if it fits, else 0."""
    widths = (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads * head_dim)
    if group_size is None:
        return head_dim if all(w % head_dim == 0 for w in widths) else 0
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 0:
        raise ValueError(f"group_size must be an int >= 0 or None, got {group_size!r}")
    if group_size and any(w % group_size for w in widths):
        raise ValueError(
            f"group_size ({group_size}) must divide the model's hidden size, intermediate size and "
            f"heads x head_dim ({', '.join(map(str, widths))})"
        )
    return group_size


HEADS = ("untied", "factored", "float-mixer", "spiking-mixer")


def _target_config(
    src, timesteps: int, path: str, operators, rotate: bool, group_size: int | None, head: str
) -> BTSpikingConfig:
    cfg = src.config
    kind = cfg.model_type
    qkv_bias = src.model.layers[0].self_attn.q_proj.bias is not None
    o_bias = src.model.layers[0].self_attn.o_proj.bias is not None
    mlp_bias = src.model.layers[0].mlp.gate_proj.bias is not None
    tied = bool(getattr(cfg, "tie_word_embeddings", False)) and (
        src.lm_head.weight.data_ptr() == src.model.embed_tokens.weight.data_ptr()
    )
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    block = largest_power_of_two_block(cfg.intermediate_size) if rotate else 0
    return BTSpikingConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads or cfg.num_attention_heads,
        head_dim=head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=float(cfg.rms_norm_eps),
        rope_parameters=dict(cfg.rope_parameters) if getattr(cfg, "rope_parameters", None) else None,
        tie_word_embeddings=tied and (head != "untied" or not rotate),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=mlp_bias,
        pad_token_id=cfg.pad_token_id,
        bos_token_id=cfg.bos_token_id,
        eos_token_id=cfg.eos_token_id,
        timesteps=timesteps,
        path=path,
        operators=operator_modes(operators),
        rotated=rotate,
        hadamard_mlp_block=block if block >= 8 else 0,
        final_mixer=rotate and tied and head != "untied",
        final_mixer_mode={"float-mixer": "float", "factored": "factored"}.get(head, "spiking"),
        encoder_group_size=_group_size(cfg, head_dim, group_size),
        source_model_type=kind,
    )


def _blockdiag_hadamard(n: int, block: int) -> Tensor:
    return torch.block_diag(*[hadamard_matrix(block)] * (n // block))


@torch.no_grad()
def _converted_state(src, config: BTSpikingConfig, seed: int, bar: tqdm | None = None) -> dict[str, Tensor]:
    """The spiking model's state dict: the source weights, folded and rotated (in float64).

    ``bar``, if given, advances by one for the embedding, each layer and the head.
    """
    if bar is None:
        bar = tqdm(disable=True)
    f64 = torch.float64
    state: dict[str, Tensor] = {}
    rotate = config.rotated
    h = config.hidden_size
    R = random_orthogonal(h, seed) if rotate else None
    d = config.head_dim
    Hv = _blockdiag_hadamard(config.num_key_value_heads * d, d) if rotate and d & (d - 1) == 0 else None
    Ho = _blockdiag_hadamard(config.num_attention_heads * d, d) if Hv is not None else None
    b = config.hadamard_mlp_block
    Hm = _blockdiag_hadamard(config.intermediate_size, b) if b else None

    def read(w: Tensor, g: Tensor | None) -> Tensor:  # a layer that reads the (normed) residual stream
        w = w.to(f64)
        if rotate:
            w = (w * g.to(f64)) @ R
        return w

    def write(w: Tensor) -> Tensor:  # a layer that adds to the residual stream
        return R.T @ w.to(f64) if rotate else w.to(f64)

    def put(name: str, t: Tensor | None) -> None:
        if t is not None:
            state[name] = t.to(torch.float32).contiguous()

    def put_writer(name: str, lin: nn.Linear, H: Tensor | None) -> None:
        """A layer that writes the stream, its input rotated by ``H`` as the model runs (if any)."""
        w = lin.weight.to(f64)
        put(f"{name}.layer.weight", write(w @ H if H is not None else w))
        if lin.bias is not None:
            put(f"{name}.layer.bias", write(lin.bias.unsqueeze(-1)).squeeze(-1))

    bar.set_postfix_str("embedding")
    emb = src.model.embed_tokens.weight.to(f64)
    put("model.embed_tokens.weight", emb @ R if rotate else emb)
    bar.update()
    for i, layer in enumerate(src.model.layers):
        bar.set_postfix_str(f"layer {i}")
        p = f"model.layers.{i}."
        att, mlp = layer.self_attn, layer.mlp
        g_in, g_post = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
        for name in ("q_proj", "k_proj", "v_proj"):
            lin = getattr(att, name)
            w, bias = read(lin.weight, g_in), lin.bias
            if name == "v_proj" and Hv is not None:
                w = Hv @ w
                bias = Hv @ bias.to(f64) if bias is not None else None
            put(p + f"self_attn.{name}.layer.weight", w)
            put(p + f"self_attn.{name}.layer.bias", bias)
        put_writer(p + "self_attn.o_proj", att.o_proj, Ho)
        for name in ("gate_proj", "up_proj"):
            lin = getattr(mlp, name)
            put(p + f"mlp.{name}.layer.weight", read(lin.weight, g_post))
            put(p + f"mlp.{name}.layer.bias", lin.bias)
        put_writer(p + "mlp.down_proj", mlp.down_proj, Hm)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            g = getattr(layer, norm).weight
            put(p + f"{norm}.weight", torch.ones_like(g) if rotate else g)
        bar.update()
    bar.set_postfix_str("lm_head")
    g_final = src.model.norm.weight
    put("model.norm.weight", torch.ones_like(g_final) if rotate else g_final)
    if config.final_mixer:
        put("final_mixer.layer.weight", R.T @ torch.diag(g_final.to(f64)) @ R)
    if config.tie_word_embeddings:
        state["lm_head.layer.weight"] = state["model.embed_tokens.weight"]
    else:
        put("lm_head.layer.weight", read(src.lm_head.weight, g_final))
    bar.update()
    return state


@torch.no_grad()
def calibrate(
    model: BTSpikingForCausalLM,
    input_ids: Tensor,
    grid: Sequence[float] = DEFAULT_CLIP_GRID,
    channel_strength: float = 0.5,
    progress: bool = False,
) -> dict[str, float]:
    """Choose every encoder's clip ratio on ``input_ids`` ``[B, L]``; returns ``{module name: clip}``.

    Each operator (Synapsis, SNNMatmul, SNNMultiply) is calibrated when the
    forward pass reaches it, so it sees the errors of the operators before it;
    the clip that gives the smallest squared error of its output against its
    float twin is kept. Operators in float mode are skipped.

    The gate product's encoders also get a threshold per channel,
    ``(max_t |x_tc|)^channel_strength`` (normalised), so that a few large
    channels of SiLU(gate) and up do not set every token's scale.

    With ``progress=True`` a tqdm bar on stderr counts the decoder layers
    (and the head) as they are calibrated.
    """
    _checks.check_nonnegative("channel_strength", channel_strength)
    _checks.check_tensor("input_ids", input_ids)
    if input_ids.dim() != 2 or input_ids.is_floating_point():
        raise ValueError(
            f"input_ids must be integer token ids [B, L], got {input_ids.dtype} {tuple(input_ids.shape)}"
        )
    chosen: dict[str, float] = {}
    layers = model.model.layers

    def label(name: str) -> None:
        layer, _, op = name.removeprefix("model.layers.").partition(".")
        bar.set_postfix_str(f"layer {layer} {op}" if name.startswith("model.layers.") else name)

    handles = register_clip_search(model, grid, chosen, channel_strength=channel_strength, on_enter=label)
    bar = tqdm(total=len(layers) + 1, desc="calibrating clip ratios", unit="layer", disable=not progress)

    def layer_done(*_) -> None:  # a forward hook: returns None, so the output stays
        bar.update()

    handles += [layer.register_forward_hook(layer_done) for layer in layers]
    was_training = model.training
    path = model.config.path
    model.eval()
    model.set_spiking(path="count")
    try:
        model(input_ids=input_ids, use_cache=False)
        bar.update()  # the head
        bar.set_postfix_str("")
    finally:
        bar.close()
        for handle in handles:
            handle.remove()
        model.set_spiking(path=path)
        model.train(was_training)
    return chosen


def convert(
    model_or_path: nn.Module | str | os.PathLike,
    timesteps: int = 15,
    calibration_text: str | Tensor | None = None,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    gguf_file: str | None = None,
    path: str = "count",
    operators: str | dict | None = None,
    rotate: bool = True,
    seed: int = 0,
    calibration_tokens: int = 256,
    group_size: int | None = None,
    final_mixer: bool = False,
    head: str | None = None,
    progress: bool = False,
) -> BTSpikingForCausalLM:
    """Convert a Llama / Qwen2 causal LM into a spiking `BTSpikingForCausalLM`.

    Args:
        model_or_path: a ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` (or a subclass),
            a local folder holding one (transformers format or, with
            ``gguf_file``, GGUF) or a local ``.gguf`` file.
        timesteps: ``T`` of every EI_IF encoder. Default 15.
        calibration_text: text (or token ids ``[B, L]``) to calibrate the clip
            ratios on; ``None`` skips calibration (clip 1 everywhere).
        tokenizer: tokenizes ``calibration_text`` (default: the folder's own).
        gguf_file: the GGUF file name inside ``model_or_path``.
        path: ``"count"`` (default) or ``"spike"``.
        operators: a preset (``"hybrid"`` default, ``"spiking"``, ``"float"``) or a dict.
        rotate: fold norms and rotations into the weights (default True).
        seed: seed of the residual rotation.
        calibration_tokens: at most this many tokens of ``calibration_text`` are used (default 256;
            never more than the model's ``max_position_embeddings``).
        group_size: channels per scale of the linear layers' encoders (one scale
            per token and group); ``None`` (default): the head dimension when it
            divides every layer's input width, else 0; 0: one scale per token.
        final_mixer: ``True`` is ``head="spiking-mixer"`` (kept for earlier callers).
        head: how a rotated model meets tied embeddings (see the module docs):
            ``"factored"`` (default; tied: the untied head's weight kept as two
            factors, ``E' M``: the same synapses and spikes, the ANN's memory),
            ``"untied"`` (a second ``vocab x hidden`` matrix),
            ``"float-mixer"`` (tied, a float ``hidden x hidden`` product before the
            head's encoder) or ``"spiking-mixer"`` (tied, a ``hidden x hidden``
            Synapsis). Without rotation or tied embeddings there is nothing to choose.
        progress: show tqdm progress bars on stderr while the weights are
            folded and the clip ratios calibrated (default False: quiet).

    Returns:
        The spiking model in eval mode, in float32, on the CPU.
    """
    source_tokenizer = None
    if isinstance(model_or_path, str | os.PathLike):
        model, source_tokenizer = load_source(model_or_path, gguf_file)
    elif isinstance(model_or_path, nn.Module):
        model = model_or_path
    else:
        raise TypeError(
            "model_or_path must be a transformers model, a local folder or a .gguf file, "
            f"got {type(model_or_path).__name__}"
        )
    _check_source(model)
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive int, got {timesteps!r}")
    if path not in ("count", "spike"):
        raise ValueError(f"path must be 'count' or 'spike', got {path!r}")
    calibration_tokens = _checks.check_timesteps("calibration_tokens", calibration_tokens)  # an int >= 1
    _checks.check_int("seed", seed, -(2**63), 2**64 - 1)
    rotate, final_mixer = _checks.check_bool("rotate", rotate), _checks.check_bool("final_mixer", final_mixer)
    if head is None:
        head = "spiking-mixer" if final_mixer else "factored"
    else:
        _checks.check_choice("head", head, HEADS)
        if final_mixer and head != "spiking-mixer":
            raise ValueError(f"final_mixer=True is head='spiking-mixer', not head={head!r}: pass one of them")
    config = _target_config(model, timesteps, path, operators, bool(rotate), group_size, head)
    model = model.to(torch.float32)
    steps = config.num_hidden_layers + 3  # embedding, layers, head, building the spiking model
    desc = "folding norms and rotations" if config.rotated else "copying weights"
    with tqdm(total=steps, desc=desc, unit="layer", disable=not progress) as bar:
        state = _converted_state(model, config, seed, bar)
        bar.set_postfix_str("spiking model")
        spiking = BTSpikingForCausalLM(config)
        missing, unexpected = spiking.load_state_dict(state, strict=False)
        bar.update()
        bar.set_postfix_str("")
    missing = [k for k in missing if not k.endswith(("clip_ratio", "channel_scale"))]  # set by calibrate
    if missing or unexpected:  # pragma: no cover - a bug in the mapping, not a user error
        raise RuntimeError(f"conversion left weights unmapped: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        spiking.tie_weights()
    spiking.eval()
    if calibration_text is not None:
        ids = _calibration_ids(calibration_text, tokenizer or source_tokenizer, config.vocab_size)
        used = min(calibration_tokens, config.max_position_embeddings)  # the model reads no more at once
        calibrate(spiking, ids[:, :used], progress=progress)
    return spiking


def _calibration_ids(text: str | Tensor, tokenizer, vocab_size: int) -> Tensor:
    if isinstance(text, Tensor):
        if text.dim() not in (1, 2):
            raise ValueError(
                f"calibration_text as a tensor must be token ids [L] or [B, L], got shape {tuple(text.shape)}"
            )
        ids = text if text.dim() == 2 else text.unsqueeze(0)
        if ids.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"calibration_text as a tensor must hold token ids, got {ids.dtype}")
    elif isinstance(text, str):
        if not text.strip():
            raise ValueError("calibration_text is empty")
        if tokenizer is None:
            raise ValueError("calibration_text is a string: pass tokenizer= (or token ids)")
        ids = tokenizer(text, return_tensors="pt").input_ids
    else:
        raise TypeError(f"calibration_text must be a string or token ids, got {type(text).__name__}")
    if ids.numel() == 0:
        raise ValueError("calibration_text has no tokens")
    if ids.min() < 0 or ids.max() >= vocab_size:
        raise ValueError(f"calibration token ids must lie in [0, {vocab_size})")
    return ids.long()
