r"""SpikeGPT (Zhu, Zhao, Li, Eshraghian 2023): a spiking RWKV language model as transformers classes.

With ``x`` the residual stream ``[B, T, d]`` (each token is one time step of
the neurons) and ``N`` the configured neuron (`SpikeGPTConfig.neuron`):

$$
\begin{aligned}
x &= \mathrm{LN}_0\big(H(E[\text{token}])\big)
  \quad (H: \text{Heaviside, arctan surrogate}; \mathrm{LN}_0 \text{ in block 0}) \\
x &\leftarrow x + N\big(\mathrm{SRWKV}(\mathrm{LN}_1(x))\big), \qquad
x \leftarrow x + N\big(\mathrm{SRFFN}(\mathrm{LN}_2(x))\big) \quad \text{(each block)} \\
\text{logits} &= W_{head}\, \mathrm{LN}_{out}(x)
\end{aligned}
$$

Token shift: ``xx_t = y_{t-1}`` (zero before the first token) for the
normalised input ``y`` of a mixer, and ``y^{(k)} = \mu_k y + (1 - \mu_k) xx``
(same for ``v`` and ``r``) with learnable per-channel mixes ``\mu``.

- SRWKV: ``k = W_k y^{(k)}``, ``v = W_v y^{(v)}``, ``r = W_r y^{(r)}``;
  ``out = W_o (\sigma(r) \odot \mathrm{WKV}(k, v))`` (see `wkv`).
- SRFFN: ``out = \sigma(W_r y^{(r)}) \odot W_v\, \mathrm{relu}(W_k y^{(k)})^2``
  (hidden width ``ffn_multiplier * d``).

Two exact modes: a full-sequence forward (training) and token by token
with a `SpikeGPTCache` (generation); both step the same recurrences, so they
give the same spikes and logits, however the sequence is split. The
recurrent state of a layer is: the last normalised input of both token
shifts, the WKV state ``(aa, bb, pp)`` and the membranes of both neurons.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import neuron, surrogate
from torch import Tensor, nn

from bt_neurons import EIIFNode, _checks
from bt_neurons.accounting import record, tracking

from .._causal_lm import causal_lm_output, check_logits_to_keep
from .._inputs import check_input_ids
from .._safe_loading import SafetensorsOnlyMixin
from .._transformers import cache_argument, with_cache
from .configuration import SpikeGPTConfig
from .wkv import WKVState, wkv_sequence

from transformers import GenerationMixin, PreTrainedModel  # noqa: E402  isort: skip
from transformers import initialization as init  # noqa: E402  isort: skip
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast  # noqa: E402  isort: skip

__all__ = [
    "SpikeGPTCache",
    "SpikeGPTForCausalLM",
    "SpikeGPTModel",
    "SpikeGPTPreTrainedModel",
    "original_key_layout",
]


class SpikeGPTCache:
    """The recurrent state of a SpikeGPT model, carried as transformers' cache.

    ``layers[i]`` is None before the first token, then a dict with
    ``"att_x"`` and ``"ffn_x"`` (the last normalised input of each token shift,
    ``[B, d]``), ``"wkv"`` (a `WKVState`, each ``[B, d]``) and ``"att_neuron"`` /
    ``"ffn_neuron"`` (the neurons' memories by name, e.g. the membrane ``v``;
    empty for ``neuron="none"``). ``seen_tokens`` counts the tokens consumed.
    The model updates it in place and returns it.
    """

    is_compileable = False

    def __init__(self, num_layers: int) -> None:
        self.layers: list[dict[str, Any] | None] = [None] * num_layers
        self.seen_tokens = 0

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def is_linear(self) -> list[bool]:
        """Every layer is a fixed-size (linear-attention-like) state: transformers slices no inputs for it."""
        return [True] * len(self.layers)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """How many tokens the state has consumed."""
        return self.seen_tokens

    def reorder_cache(self, beam_idx: Tensor) -> None:
        """Select the batch rows ``beam_idx`` of every state tensor (beam search)."""

        def pick(value: Any) -> Any:
            if isinstance(value, Tensor):
                return value.index_select(0, beam_idx.to(value.device)) if value.dim() else value
            if isinstance(value, WKVState):
                return WKVState(*(pick(v) for v in value))
            if isinstance(value, dict):
                return {k: pick(v) for k, v in value.items()}
            return value

        self.layers = [pick(layer) for layer in self.layers]


def _record_linears(name: str, tokens: int, *linears: nn.Linear) -> None:
    """Account the multiply-accumulates of linear layers on real-valued inputs (`track_spikes`)."""
    if tracking():
        macs = tokens * sum(lin.in_features * lin.out_features for lin in linears)
        record(name, 0.0, 0.0, macs, dense_macs=macs)


def _token_shift(y: Tensor, last: Tensor | None) -> Tensor:
    """``xx [B, T, C]``: ``y`` moved one token later, ``last`` (or zeros) in front."""
    if last is not None and y.shape[1] == 1:  # one decode step: the previous token's input itself
        return last.to(y.dtype).unsqueeze(1)
    first = torch.zeros_like(y[:, :1]) if last is None else last.to(y.dtype).unsqueeze(1)
    return torch.cat([first, y[:, :-1]], dim=1)


def _mix(y: Tensor, xx: Tensor, mu: Tensor) -> Tensor:
    """``mu * y + (1 - mu) * xx`` in one pass (``torch.lerp``)."""
    return torch.lerp(xx, y, mu.to(y.dtype))


def _ratios(layer_id: int, num_layers: int) -> tuple[float, float]:
    """``(l / (L - 1), 1 - l / L)``: the depth ratios of the paper's initialisation."""
    return layer_id / max(num_layers - 1, 1), 1.0 - layer_id / num_layers


def _channel_ramp(channels: int) -> Tensor:
    return torch.arange(channels, dtype=torch.float64) / channels


class SpikeGPTTimeMix(nn.Module):
    r"""SRWKV, the spiking RWKV's token mixer: ``[B, T, d] -> [B, T, d]``.

    ``out = W_o (\sigma(W_r y^{(r)}) \odot \mathrm{WKV}(W_k y^{(k)}, W_v y^{(v)}))``
    with decay ``w = exp(time_decay)`` and bonus ``u = time_first``.
    Initialisation (channel ``i`` of ``C``, layer ``l`` of ``L``):
    ``mu_k = (i/C)^{1 - l/L}``, ``mu_v = mu_k + 0.3 l/(L-1)``,
    ``mu_r = (i/C)^{0.5 (1 - l/L)}``,
    ``time_decay_i = -5 + 8 (i/(C-1))^{0.7 + 1.3 l/(L-1)}``,
    ``time_first_i = ln 0.3 + 0.5 ((i + 1) mod 3 - 1)``.
    """

    def __init__(self, config: SpikeGPTConfig, layer_id: int) -> None:
        super().__init__()
        C = config.hidden_size
        self.layer_id = layer_id
        self.num_layers = config.num_hidden_layers
        self.time_decay = nn.Parameter(torch.empty(C))
        self.time_first = nn.Parameter(torch.empty(C))
        self.time_mix_k = nn.Parameter(torch.empty(C))
        self.time_mix_v = nn.Parameter(torch.empty(C))
        self.time_mix_r = nn.Parameter(torch.empty(C))
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.reset_time_parameters()

    def initial_time_parameters(self) -> dict[str, Tensor]:
        """The paper's initial values of the five per-channel parameters (float64, ``[C]``)."""
        C = self.time_decay.shape[0]
        up, down = _ratios(self.layer_id, self.num_layers)
        ramp = _channel_ramp(C)
        h = torch.arange(C, dtype=torch.float64) / max(C - 1, 1)
        zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(C)], dtype=torch.float64) * 0.5
        mix_k = ramp**down
        return {
            "time_decay": -5 + 8 * h ** (0.7 + 1.3 * up),
            "time_first": torch.full((C,), math.log(0.3), dtype=torch.float64) + zigzag,
            "time_mix_k": mix_k,
            "time_mix_v": mix_k + 0.3 * up,
            "time_mix_r": ramp ** (0.5 * down),
        }

    def reset_time_parameters(self) -> None:
        """Set the five per-channel parameters to the paper's initial values."""
        for name, value in self.initial_time_parameters().items():
            param = getattr(self, name)
            init.copy_(param, value.to(device=param.device, dtype=param.dtype))

    def forward(
        self, y: Tensor, last: Tensor | None, state: WKVState | None
    ) -> tuple[Tensor, Tensor, WKVState]:
        """``(out [B, T, d], last normalised input [B, d], WKV state)`` from ``y = LN_1(x)``."""
        xx = _token_shift(y, last)
        k = self.key(_mix(y, xx, self.time_mix_k))
        v = self.value(_mix(y, xx, self.time_mix_v))
        r = torch.sigmoid(self.receptance(_mix(y, xx, self.time_mix_r)))
        wkv, state = wkv_sequence(k, v, torch.exp(self.time_decay), self.time_first, state)
        _record_linears(
            f"blocks.{self.layer_id}.att",
            y.shape[0] * y.shape[1],
            self.key,
            self.value,
            self.receptance,
            self.output,
        )
        return self.output(r * wkv), y[:, -1], state


class SpikeGPTChannelMix(nn.Module):
    r"""SRFFN: ``\sigma(W_r y^{(r)}) \odot W_v\,\mathrm{relu}(W_k y^{(k)})^2``, ``[B, T, d] -> [B, T, d]``.

    Hidden width ``ffn_multiplier * d``; ``mu_k = mu_r = (i/C)^{1 - l/L}`` at initialisation.
    """

    def __init__(self, config: SpikeGPTConfig, layer_id: int) -> None:
        super().__init__()
        C, H = config.hidden_size, config.intermediate_size
        self.layer_id = layer_id
        self.num_layers = config.num_hidden_layers
        self.time_mix_k = nn.Parameter(torch.empty(C))
        self.time_mix_r = nn.Parameter(torch.empty(C))
        self.key = nn.Linear(C, H, bias=False)
        self.value = nn.Linear(H, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.reset_time_parameters()

    def initial_time_parameters(self) -> dict[str, Tensor]:
        """The paper's initial values of the two per-channel mixes (float64, ``[C]``)."""
        _, down = _ratios(self.layer_id, self.num_layers)
        mix = _channel_ramp(self.time_mix_k.shape[0]) ** down
        return {"time_mix_k": mix, "time_mix_r": mix.clone()}

    def reset_time_parameters(self) -> None:
        """Set the two per-channel mixes to the paper's initial values."""
        for name, value in self.initial_time_parameters().items():
            param = getattr(self, name)
            init.copy_(param, value.to(device=param.device, dtype=param.dtype))

    def forward(self, y: Tensor, last: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(out [B, T, d], last normalised input [B, d])`` from ``y = LN_2(x)``."""
        xx = _token_shift(y, last)
        k = torch.square(torch.relu(self.key(_mix(y, xx, self.time_mix_k))))
        r = torch.sigmoid(self.receptance(_mix(y, xx, self.time_mix_r)))
        _record_linears(
            f"blocks.{self.layer_id}.ffn", y.shape[0] * y.shape[1], self.key, self.value, self.receptance
        )
        return r * self.value(k), y[:, -1]


def _load_lif_kernels_quietly() -> None:
    """Import SpikingJelly's LIF operator now, without torch's "Triton not available" warnings.

    SpikingJelly registers its LIF kernels on the first multi-step LIF forward;
    on a machine without Triton (every CPU-only install) torch logs two
    warnings then, in the middle of a user's output. Nothing is wrong: the CPU
    kernel is used.
    """
    logger = logging.getLogger("torch._library.triton")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        importlib.import_module("spikingjelly._ops.lif")
    except ImportError:  # another SpikingJelly layout: it registers its kernels its own way
        pass
    finally:
        logger.setLevel(level)


def _make_node(config: SpikeGPTConfig) -> nn.Module | None:
    if config.neuron == "lif":
        _load_lif_kernels_quietly()
        return neuron.LIFNode(
            tau=float(config.lif_tau),
            v_threshold=float(config.lif_threshold),
            v_reset=0.0,
            decay_input=True,
            surrogate_function=surrogate.ATan(),
            step_mode="m",
        )
    if config.neuron == "eiif":
        return EIIFNode(
            theta_0=float(config.eiif_threshold),
            alpha=0.0,
            r=float(config.eiif_attenuation),
            soft_reset=True,
            surrogate_function=surrogate.ATan(),
            step_mode="m",
        )
    return None


class BranchNeuron(nn.Module):
    """The neuron on a block's output branch, stepping along the token axis: ``[B, T, d] -> [B, T, d]``.

    ``node`` is the configured SpikingJelly multi-step node (``LIFNode`` or
    bt's `EIIFNode`): it holds the neuron's parameters and is what a user
    inspects. The forward runs the node's own step function on the sequence
    ``[T, B, d]``, from the memories it is given (None: a new sequence), and
    returns the memories after the last token: SpikingJelly's
    ``functional.lif_multi_step`` for the LIF (what ``LIFNode`` runs), the
    node's ``multi_step_functional_forward`` for EI_IF. The node's own
    memories are never touched, so nothing leaks from one call to the next
    (the state lives in the cache only) and a one-token decode step costs no
    module bookkeeping. With ``neuron="none"`` it is the identity and has no state.
    """

    def __init__(self, config: SpikeGPTConfig, name: str = "neuron") -> None:
        super().__init__()
        self.node = _make_node(config)
        self.name = name

    def _run(self, x_seq: Tensor, state: Mapping[str, Tensor] | None) -> tuple[Tensor, dict[str, Tensor]]:
        node = self.node
        dtype = _checks.compute_dtype(x_seq.dtype)
        v = state.get("v") if state else None
        if v is None or v.shape != x_seq.shape[1:]:
            v = torch.zeros(x_seq.shape[1:], dtype=dtype, device=x_seq.device)
        if isinstance(node, EIIFNode):
            t = state.get("t") if state else None
            t = torch.zeros((), dtype=torch.long, device=x_seq.device) if t is None else t
            (spikes,), (v, t, *_) = node.multi_step_functional_forward((x_seq,), (v.to(dtype), t))
            return spikes, {"v": v, "t": t}
        spikes, v, _ = sj_functional.lif_multi_step(
            x_seq,
            v.to(torch.float32),
            node.tau,
            node.decay_input,
            node.v_threshold,
            node.v_reset,
            node.surrogate_function,
            node.detach_reset,
            False,
        )
        return spikes, {"v": v}

    def forward(self, x: Tensor, state: Mapping[str, Tensor] | None) -> tuple[Tensor, dict[str, Tensor]]:
        """``(spikes [B, T, d], the neuron's memories after the last token)``.

        Inside `bt_neurons.track_spikes`, records under ``name`` its spikes and
        the additions that put the branch onto the residual stream: one per
        spike (an event adds +-1 to one channel), or one per element for the
        ANN twin (a dense addition).
        """
        if self.node is None:
            if tracking():
                record(self.name, 0.0, x.numel(), 0.0)
            return x, {}
        spikes, memories = self._run(x.transpose(0, 1), state)
        spikes = spikes.transpose(0, 1).to(x.dtype)
        if tracking():
            events = torch.count_nonzero(spikes.detach())
            record(self.name, spikes.detach().abs().sum(), events, 0.0)
        return spikes, memories


class SpikeGPTBlock(nn.Module):
    """One pre-LN block: ``x + N(SRWKV(LN_1 x))``, then ``x + N(SRFFN(LN_2 x))``.

    Block 0 applies ``LN_0`` to the embedding first.
    """

    def __init__(self, config: SpikeGPTConfig, layer_id: int) -> None:
        super().__init__()
        C, eps = config.hidden_size, config.layer_norm_eps
        self.layer_id = layer_id
        self.ln0 = nn.LayerNorm(C, eps=eps) if layer_id == 0 else None
        self.ln1 = nn.LayerNorm(C, eps=eps)
        self.ln2 = nn.LayerNorm(C, eps=eps)
        self.att = SpikeGPTTimeMix(config, layer_id)
        self.ffn = SpikeGPTChannelMix(config, layer_id)
        self.att_neuron = BranchNeuron(config, f"blocks.{layer_id}.att_neuron")
        self.ffn_neuron = BranchNeuron(config, f"blocks.{layer_id}.ffn_neuron")

    def forward(self, x: Tensor, state: Mapping[str, Any] | None) -> tuple[Tensor, dict[str, Any]]:
        """``(x [B, T, d], this layer's new state)`` from ``x`` and its state (None: a new sequence)."""
        state = state or {}
        if self.ln0 is not None:
            x = self.ln0(x)
        att, att_x, wkv = self.att(self.ln1(x), state.get("att_x"), state.get("wkv"))
        att, att_mem = self.att_neuron(att, state.get("att_neuron"))
        x = x + att
        ffn, ffn_x = self.ffn(self.ln2(x), state.get("ffn_x"))
        ffn, ffn_mem = self.ffn_neuron(ffn, state.get("ffn_neuron"))
        x = x + ffn
        return x, {"att_x": att_x, "ffn_x": ffn_x, "wkv": wkv, "att_neuron": att_mem, "ffn_neuron": ffn_mem}


class SpikeGPTPreTrainedModel(SafetensorsOnlyMixin, PreTrainedModel):
    """Shared settings of the SpikeGPT models (transformers' ``PreTrainedModel``)."""

    config: SpikeGPTConfig
    config_class = SpikeGPTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["SpikeGPTBlock"]
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _is_stateful = True  # an RNN: no assisted generation (its state cannot roll back)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        """No attention KV cache: the model builds its own `SpikeGPTCache`."""
        return False

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, SpikeGPTTimeMix | SpikeGPTChannelMix):
            module.reset_time_parameters()


def _check_attention_mask(attention_mask: Tensor | None) -> None:
    """SpikeGPT has no padding: a mask, when given, must be all ones."""
    if attention_mask is None or _checks.tracing():
        return
    _checks.check_tensor("attention_mask", attention_mask)
    if attention_mask.numel() and not bool((attention_mask == 1).all()):
        raise ValueError(
            "attention_mask must be all ones: SpikeGPT is recurrent and has no padding "
            "(run sequences of different lengths separately, or pad on the right and ignore those logits)"
        )


class SpikeGPTModel(SpikeGPTPreTrainedModel):
    """The SpikeGPT stack: (binary) embedding, blocks and ``ln_out``; ``[B, T]`` ids -> ``[B, T, d]``."""

    def __init__(self, config: SpikeGPTConfig) -> None:
        super().__init__(config)
        self.emb = nn.Embedding(config.vocab_size, config.hidden_size)
        self.binary = surrogate.ATan(alpha=2.0) if config.binary_embedding else None
        self.blocks = nn.ModuleList(SpikeGPTBlock(config, i) for i in range(config.num_hidden_layers))
        self.ln_out = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.emb = value

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: SpikeGPTCache | None = None,
        inputs_embeds: Tensor | None = None,
        use_cache: bool | None = None,
        past_key_values: SpikeGPTCache | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        """Last hidden states ``[B, T, d]`` (after ``ln_out``) and the recurrent state.

        The state is taken as ``cache`` or ``past_key_values`` (see
        `cache_argument`); a given `SpikeGPTCache` is continued and updated
        in place. Without one, the sequence starts from the reset state, and
        with ``use_cache`` (default ``config.use_cache``) a new cache is
        returned under the installed transformers' field name.
        """
        state = cache_argument(cache, past_key_values)
        if state is not None and not isinstance(state, SpikeGPTCache):
            raise TypeError(
                f"the cache of a SpikeGPT model must be a SpikeGPTCache (or None), got {type(state).__name__}"
            )
        if state is not None and len(state) != len(self.blocks):
            raise ValueError(f"the cache has {len(state)} layers, the model {len(self.blocks)}")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        _check_attention_mask(attention_mask)
        if inputs_embeds is None:
            inputs_embeds = self.emb(check_input_ids(input_ids, self.config.vocab_size))
        else:
            _checks.check_floating("inputs_embeds", inputs_embeds)
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[1] == 0:
                raise ValueError(
                    f"inputs_embeds must have shape [batch, tokens, {self.config.hidden_size}] with at "
                    f"least one token, got {tuple(inputs_embeds.shape)}"
                )
            if inputs_embeds.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    f"inputs_embeds must have shape [batch, tokens, {self.config.hidden_size}] "
                    f"(hidden_size), got {tuple(inputs_embeds.shape)}"
                )
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if state is None and use_cache:
            state = SpikeGPTCache(len(self.blocks))
        x = self.binary(inputs_embeds) if self.binary is not None else inputs_embeds
        if self.binary is not None and tracking():
            record("emb", torch.count_nonzero(x.detach()), 0.0, 0.0)
        for i, block in enumerate(self.blocks):
            x, layer_state = block(x, state.layers[i] if state is not None else None)
            if state is not None:
                state.layers[i] = layer_state
        if state is not None:
            state.seen_tokens += x.shape[1]
        return with_cache(BaseModelOutputWithPast, state, last_hidden_state=self.ln_out(x))


#: The per-block parameters of the released SpikeGPT layout (``blocks.N.<name>``), without ``ln0``.
_BLOCK_KEYS = (
    "ln1.weight",
    "ln1.bias",
    "ln2.weight",
    "ln2.bias",
    "att.key.weight",
    "att.value.weight",
    "att.receptance.weight",
    "att.output.weight",
    "att.time_decay",
    "att.time_first",
    "att.time_mix_k",
    "att.time_mix_v",
    "att.time_mix_r",
    "ffn.key.weight",
    "ffn.value.weight",
    "ffn.receptance.weight",
    "ffn.time_mix_k",
    "ffn.time_mix_r",
)


def original_key_layout(config: SpikeGPTConfig) -> dict[str, str]:
    """``{key of the released SpikeGPT state dict: key of SpikeGPTForCausalLM's}``.

    The released layout: ``emb.weight``, ``blocks.N.{ln0 (N = 0), ln1, ln2}.{weight, bias}``,
    ``blocks.N.att.{key, value, receptance, output}.weight``,
    ``blocks.N.att.{time_decay, time_first, time_mix_k, time_mix_v, time_mix_r}``,
    ``blocks.N.ffn.{key, value, receptance}.weight``, ``blocks.N.ffn.{time_mix_k, time_mix_r}``,
    ``ln_out.{weight, bias}`` and ``head.weight`` (optional when the embeddings are tied).
    """
    keys = ["emb.weight", "blocks.0.ln0.weight", "blocks.0.ln0.bias"]
    for i in range(config.num_hidden_layers):
        keys += [f"blocks.{i}.{name}" for name in _BLOCK_KEYS]
    keys += ["ln_out.weight", "ln_out.bias"]
    layout = {key: f"model.{key}" for key in keys}
    layout["head.weight"] = "head.weight"
    return layout


class SpikeGPTForCausalLM(SpikeGPTPreTrainedModel, GenerationMixin):
    """SpikeGPT with its ``head``: ``[B, T]`` ids -> logits ``[B, T, vocab]``.

    Use it like any transformers causal LM: ``model(input_ids, labels=...)``
    (the loss shifts the labels as transformers does), ``model.generate(...)``
    (greedy or sampled; the recurrent state is the cache, so each new token
    costs O(1)), ``save_pretrained`` / ``from_pretrained`` and, after
    ``import bt_neurons.models.spikegpt``, ``AutoModelForCausalLM``.
    `from_original_state_dict` loads a state dict in the released SpikeGPT layout,
    `from_original_checkpoint` a released checkpoint file.
    """

    _tied_weights_keys = {"head.weight": "model.emb.weight"}

    def __init__(self, config: SpikeGPTConfig) -> None:
        super().__init__(config)
        self.model = SpikeGPTModel(config)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.emb = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.head = value

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: SpikeGPTCache | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | Tensor = 0,
        past_key_values: SpikeGPTCache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        """Logits ``[B, T, vocab]`` (the last ``logits_to_keep`` positions when it is > 0), loss and state.

        ``labels`` ``[B, T]`` (token ids, -100 ignored) give the next-token
        cross-entropy, shifted inside as transformers does. The recurrent
        state is taken as ``cache`` or ``past_key_values`` and returned under
        the installed release's field name.
        """
        check_logits_to_keep(logits_to_keep)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            cache=cache_argument(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        return causal_lm_output(
            out, self._head, self.loss_function, self.config.vocab_size, labels, logits_to_keep, **kwargs
        )

    def _head(self, hidden: Tensor) -> Tensor:
        _record_linears("head", hidden[..., 0].numel(), self.head)
        return self.head(hidden)

    def prepare_inputs_for_generation(
        self,
        input_ids: Tensor,
        cache: SpikeGPTCache | None = None,
        past_key_values: SpikeGPTCache | None = None,
        attention_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The next forward's inputs: with a cache, only the tokens it has not consumed yet."""
        state = cache_argument(cache, past_key_values)
        seen = state.seen_tokens if isinstance(state, SpikeGPTCache) else 0
        inputs: dict[str, Any] = {"use_cache": use_cache, "attention_mask": attention_mask}
        if inputs_embeds is not None and seen == 0:
            inputs["inputs_embeds"] = inputs_embeds
        else:
            inputs["input_ids"] = input_ids[:, seen:] if seen else input_ids
        if state is not None:
            inputs["cache"] = state
        if "logits_to_keep" in kwargs:
            inputs["logits_to_keep"] = kwargs["logits_to_keep"]
        return inputs

    @classmethod
    def from_original_checkpoint(cls, path: str | os.PathLike, config: SpikeGPTConfig) -> SpikeGPTForCausalLM:
        """A model holding the weights of a released SpikeGPT checkpoint file (`from_original_state_dict`).

        ``.safetensors`` files are read with safetensors; ``.pth`` / ``.pt`` /
        ``.bin`` files with ``torch.load(weights_only=True)``, which unpickles
        tensors and plain containers only, never code. A checkpoint saved as
        ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: another suffix, a file that is not a checkpoint (or holds
                anything ``weights_only`` refuses), or a wrong state dict (every key named).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"path {str(path)!r} is not a file (expected a .safetensors or .pth checkpoint)"
            )
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                state = load_file(path)
            except (SafetensorError, OSError) as exc:
                raise ValueError(f"cannot read {str(path)!r} as safetensors: {exc}") from None
        elif suffix in (".pth", ".pt", ".bin"):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # UnpicklingError, a truncated zip, ...: all mean "not a weights file"
                raise ValueError(
                    f"cannot read {str(path)!r} with torch.load(weights_only=True): {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
            for wrapper in ("state_dict", "model"):
                if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
                    state = state[wrapper]
        else:
            raise ValueError(
                f"path {str(path)!r} must end in .safetensors, .pth, .pt or .bin, got {suffix!r}"
            )
        return cls.from_original_state_dict(state, config)

    @classmethod
    def from_original_state_dict(
        cls, state_dict: Mapping[str, Tensor], config: SpikeGPTConfig
    ) -> SpikeGPTForCausalLM:
        """A model holding the weights of a state dict in the released SpikeGPT layout.

        See `original_key_layout` for the keys. The released checkpoints store
        ``time_mix_*`` as ``[1, 1, d]`` and ``time_decay`` / ``time_first`` as
        ``[d]``: both are accepted (any shape with the right ``d`` elements
        for these per-channel parameters). Everything is checked before the
        model is built; the weights are copied (the given tensors are not kept),
        and the model has the dtype of ``emb.weight``.

        Raises:
            TypeError: ``config`` is not a `SpikeGPTConfig`, or a value is not a floating tensor.
            ValueError: missing or unexpected keys (every one named), wrong shapes, non-finite values.
        """
        if not isinstance(config, SpikeGPTConfig):
            raise TypeError(f"config must be a SpikeGPTConfig, got {type(config).__name__}")
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}"
            )
        layout = original_key_layout(config)
        required = set(layout) - ({"head.weight"} if config.tie_word_embeddings else set())
        missing = sorted(required - set(state_dict))
        unexpected = sorted(set(state_dict) - set(layout))
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise ValueError(f"state_dict is not a SpikeGPT state dict for this config: {'; '.join(parts)}")
        dtype = state_dict["emb.weight"].dtype if isinstance(state_dict["emb.weight"], Tensor) else None
        model = cls(config)
        if dtype is not None and dtype.is_floating_point:
            model = model.to(dtype)
        ours = model.state_dict()
        converted: dict[str, Tensor] = {}
        problems = []
        for key, target in layout.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise TypeError(f"state_dict[{key!r}] must be a floating tensor, got {type(value).__name__}")
            shape = ours[target].shape
            per_channel = key.rsplit(".", 1)[-1].startswith(("time_mix", "time_decay", "time_first"))
            if (
                value.shape != shape
                and per_channel
                and value.numel() == shape.numel()
                and value.shape[-1:] == shape
            ):
                value = value.reshape(shape)
            if value.shape != shape:
                problems.append(f"{key}: expected {tuple(shape)}, got {tuple(value.shape)}")
                continue
            if not bool(torch.isfinite(value).all()):
                problems.append(f"{key}: has NaN or Inf values")
                continue
            converted[target] = value.detach().to(dtype=ours[target].dtype, device=ours[target].device)
        if problems:
            raise ValueError("state_dict has wrong tensors: " + "; ".join(problems))
        full = dict(ours)  # the neurons' constant buffers (e.g. EIIF thresholds) come from the config
        full.update(converted)
        if config.tie_word_embeddings:
            full.pop("head.weight", None)
        model.load_state_dict(full, strict=not config.tie_word_embeddings)
        if config.tie_word_embeddings:
            model.tie_weights()
        return model
