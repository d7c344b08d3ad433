r"""`BTSpikingForCausalLM`: a Llama / Qwen2-style causal LM built from spiking operators.

One decoder layer, with ``T`` = ``config.timesteps`` and every operator in
its configured mode (``config.operators``; see `BTSpikingConfig`):

$$
\begin{aligned}
a &= \mathrm{RMSNorm}(h), \quad q, k, v = \mathrm{Synapsis}_{q,k,v}(a), \quad
  q, k \leftarrow \mathrm{RoPE}(q, k) \\
P &= \mathrm{SNNSoftmax}\big(\mathrm{SNNMatmul}(q / \sqrt d,\ k^\top) + \text{causal mask}\big), \quad
  o = \mathrm{SNNMatmul}(P, v) \\
h &\leftarrow h + \mathrm{Synapsis}_o(o) \\
b &= \mathrm{RMSNorm}(h), \quad
  h \leftarrow h + \mathrm{Synapsis}_{down}\big(\mathrm{SNNMultiply}(
  \mathrm{SiLU}(\mathrm{Synapsis}_{gate}(b)), \mathrm{Synapsis}_{up}(b))\big)
\end{aligned}
$$

Every operator encodes its own float inputs with EI_IF neurons (per-token
scales, or per token and group of ``config.encoder_group_size`` channels for
the linear layers and the gate product; counts in ``[-T, T]``); a Synapsis
therefore has presynaptic neurons
only (``post=False``): its postsynaptic neurons would encode what the next
operator encodes anyway. The outputs of the spiking products (attention's
$P v$ and the gate product) are already integer counts times a per-row scale;
``o_proj`` and ``down_proj`` take them as graded events instead of encoding
them again. The residual stream $h$ is the running sum of the synaptic
currents the layers add to it. The token embedding is a table lookup (no
synaptic operation) and the logits are the currents of ``lm_head``.

The shipped approximators (SiLU, Exp, Reciprocal, Square, RSqrt) are
constants of the model, not weights: they are shared, frozen and never saved
with a checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from torch import Tensor, nn

from bt_neurons import (
    QSynapsis,
    Quantizer,
    SNNMatmul,
    SNNMultiply,
    SNNRMSNorm,
    SNNSoftmax,
    Synapsis,
    _checks,
    synapses_of_one_input,
)
from bt_neurons.accounting import record, tracking
from bt_neurons.synapsis import _hooked

from .._causal_lm import causal_lm_output, check_logits_to_keep
from .._inputs import check_input_ids
from .._shipped import ShippedApproximator
from .._transformers import cache_argument, with_cache
from .configuration import BTSpikingConfig
from .rotation import hadamard_transform

from transformers import GenerationMixin, PreTrainedModel  # noqa: E402  isort: skip
from transformers.cache_utils import Cache, DynamicCache  # noqa: E402  isort: skip
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast  # noqa: E402  isort: skip
from transformers.models.llama.modeling_llama import (  # noqa: E402  isort: skip
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)

__all__ = ["BTSpikingForCausalLM", "BTSpikingModel", "BTSpikingPreTrainedModel"]


#: Queries per block of the attention products at inference (`BTSpikingAttention._causal_blocks`).
QUERY_BLOCK = 256


def _synapsis(in_features: int, out_features: int, bias: bool, config: BTSpikingConfig) -> Synapsis:
    G = config.encoder_group_size or None
    pre = Quantizer(qmax=config.timesteps, group_size=G)
    return Synapsis(
        nn.Linear(in_features, out_features, bias=bias), config.timesteps, post=False, pre_quantizer=pre
    )


class _Operators(nn.Module):
    """Base of the modules whose forward depends on ``config.operators``."""

    def __init__(self, config: BTSpikingConfig) -> None:
        super().__init__()
        self.config = config

    def spiking(self, op: str) -> bool:
        return self.config.operators[op] == "spiking"

    def linear(self, syn: Synapsis, x: Tensor) -> Tensor:
        return syn(x) if self.spiking("linear") else syn.layer(x)

    def linears(self, synapses: list[Synapsis], x: Tensor) -> list[Tensor]:
        """Several synapses reading ``x``: spiking ones encode it once (`synapses_of_one_input`)."""
        if self.spiking("linear") and all(isinstance(s, Synapsis) for s in synapses):
            return synapses_of_one_input(synapses, x)
        return [self.linear(s, x) for s in synapses]  # e.g. QSynapsis layers prepared for stage 1

    def graded(self, syn: Synapsis, x: Tensor, from_counts: bool) -> Tensor:
        """A Synapsis whose input may already be integer spike counts (times a per-row scale).

        The output of a spiking product (SNNMatmul, SNNMultiply) is a sum of
        spikes times counts: it reaches the next synapse as graded events and
        is not encoded a second time. Only float currents are encoded by the
        Synapsis's own EI_IF neurons. Graded inputs are charged as
        multiply-accumulates in the energy estimate.
        """
        if from_counts or not self.spiking("linear"):
            return syn.layer(x)
        return syn(x)


class BTSpikingAttention(_Operators):
    """Grouped-query self-attention with spiking products and softmax."""

    def __init__(self, config: BTSpikingConfig, layer_idx: int) -> None:
        super().__init__(config)
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.groups = self.heads // self.kv_heads
        self.scaling = self.head_dim**-0.5
        h, d = config.hidden_size, self.head_dim
        self.q_proj = _synapsis(h, self.heads * d, config.qkv_bias, config)
        self.k_proj = _synapsis(h, self.kv_heads * d, config.qkv_bias, config)
        self.v_proj = _synapsis(h, self.kv_heads * d, config.qkv_bias, config)
        self.o_proj = _synapsis(self.heads * d, h, config.o_bias, config)
        self.scores = SNNMatmul(config.timesteps, transpose_y=True)
        self.weighted_values = SNNMatmul(config.timesteps, transpose_y=False)
        self.softmax = SNNSoftmax(
            "spiking", exp=ShippedApproximator("exp"), reciprocal=ShippedApproximator("reciprocal")
        )
        self.rotate_qk = bool(config.rotated) and d & (d - 1) == 0

    def _matmul(self, op: SNNMatmul, x: Tensor, y: Tensor) -> Tensor:
        """The float product (``operators['matmul'] == 'float'``) in ``op``'s layout."""
        y = y.repeat_interleave(self.groups, dim=-3) if self.groups > 1 else y
        return x @ (y.transpose(-1, -2) if op.transpose_y else y)

    def forward(
        self,
        hidden: Tensor,
        position_embeddings: tuple[Tensor, Tensor],
        allowed: Tensor,
        past_key_values: Cache | None = None,
    ) -> Tensor:
        B, L, _ = hidden.shape
        d = self.head_dim
        q, k, v = self.linears([self.q_proj, self.k_proj, self.v_proj], hidden)
        q = q.view(B, L, self.heads, d).transpose(1, 2)
        k = k.view(B, L, self.kv_heads, d).transpose(1, 2)
        v = v.view(B, L, self.kv_heads, d).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if self.rotate_qk:  # the same orthogonal map on queries and keys leaves q k^T unchanged
            q, k = hadamard_transform(q, d), hadamard_transform(k, d)
        if self.spiking("matmul"):
            o = self._spiking_products(q, k, v, allowed, past_key_values)
        else:
            if past_key_values is not None:
                k, v = self._update(past_key_values, k, v)
            scores = self._matmul(self.scores, q * self.scaling, k)
            o = self._matmul(self.weighted_values, self._probabilities(scores, allowed), v)
        o = o.transpose(1, 2).reshape(B, L, self.heads * d)
        return self.graded(self.o_proj, o, self.spiking("matmul"))

    def _probabilities(self, scores: Tensor, allowed: Tensor) -> Tensor:
        self.softmax.mode = self.config.operators["softmax"]
        if self.softmax.mode == "float":  # every query sees itself (`allowed_positions`): no row is empty
            return torch.softmax(scores.masked_fill(~allowed, float("-inf")).float(), dim=-1).to(scores.dtype)
        return self.softmax(scores, allowed)

    def _update(self, cache: Cache, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """``cache.update``, refusing a cache filled in the other matmul mode (encoded or float keys)."""
        layers = getattr(cache, "layers", None)
        held = (
            getattr(layers[self.layer_idx], "keys", None) if layers and len(layers) > self.layer_idx else None
        )
        if isinstance(held, Tensor) and held.numel() and held.shape[-1] != k.shape[-1]:
            raise ValueError(
                f"the KV cache holds keys of width {held.shape[-1]}, not {k.shape[-1]}: it was filled with "
                "operators['matmul'] in the other mode; start a new cache after set_spiking(operators=...)"
            )
        return cache.update(k, v, self.layer_idx)

    def _spiking_products(
        self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, cache: Cache | None
    ) -> Tensor:
        r"""$P V$ with $P = \mathrm{softmax}(q k^\top / \sqrt d)$, both products spiking.

        The keys and values enter the KV cache encoded (counts and each
        token's scale, `SNNMatmul.encode`): an encoder's output for a token
        never changes, so each decoding step encodes its new token only.
        """
        grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
        watched = tracking() or _hooked(self.scores) or _hooked(self.weighted_values)
        if cache is None and (grad or watched):  # the operators' own forward (the same bits; hooks see it)
            scores = self.scores(q * self.scaling, k, groups=self.groups)
            return self.weighted_values(self._probabilities(scores, allowed), v, groups=self.groups)
        L = k.shape[-2]
        k_enc, v_enc = self.scores.encode(k), self.weighted_values.encode(v)
        if cache is not None:
            k_enc, v_enc = self._update(cache, k_enc, v_enc)
        if not (grad or watched):
            return self._causal_blocks(q, k_enc, v_enc, allowed)
        k_float = v_float = None
        if grad:  # the straight-through gradient reads the float operands (cached tokens: decoded)
            k_float, v_float = (
                torch.cat([(e[..., :-1] * e[..., -1:])[..., :-L, :].detach(), f], dim=-2)
                for e, f in ((k_enc, k), (v_enc, v))
            )
        scores = self.scores.product(q * self.scaling, k_enc, groups=self.groups, y=k_float)
        p = self._probabilities(scores, allowed)
        return self.weighted_values.product(p, v_enc, groups=self.groups, y=v_float)

    def _causal_blocks(self, q: Tensor, k_enc: Tensor, v_enc: Tensor, allowed: Tensor) -> Tensor:
        """Both products for blocks of ``QUERY_BLOCK`` queries, each with the keys it may see (inference).

        A query never sees a later key (`allowed_positions`), so the keys after a block's last query
        only add exact zeros to its probabilities, and leaving them out changes nothing but the
        rounding of the softmax's sum (the integer products are exact). Half the work of the dense
        ``L x L`` products, in blocks that stay in the cache.
        """
        m = q.shape[-2]
        past = k_enc.shape[-2] - m
        outs = []
        for r0 in range(0, m, QUERY_BLOCK):  # one block (every key) for a decoding step or a short prompt
            r1 = min(m, r0 + QUERY_BLOCK)
            end = past + r1  # the last key these queries may see, plus one
            scores = self.scores.product(
                q[..., r0:r1, :] * self.scaling, k_enc[..., :end, :], groups=self.groups
            )
            p = self._probabilities(scores, allowed[..., r0:r1, :end])
            outs.append(self.weighted_values.product(p, v_enc[..., :end, :], groups=self.groups))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


class BTSpikingMLP(_Operators):
    r"""Gated MLP: $W_{down}\,(\mathrm{SiLU}(W_{gate} x) \odot W_{up} x)$."""

    def __init__(self, config: BTSpikingConfig) -> None:
        super().__init__(config)
        h, i = config.hidden_size, config.intermediate_size
        self.gate_proj = _synapsis(h, i, config.mlp_bias, config)
        self.up_proj = _synapsis(h, i, config.mlp_bias, config)
        self.down_proj = _synapsis(i, h, config.mlp_bias, config)
        self.multiply = SNNMultiply(
            config.timesteps, channels=i, group_size=config.encoder_group_size or None
        )
        self.silu = ShippedApproximator("silu")

    def forward(self, x: Tensor) -> Tensor:
        g, u = self.linears([self.gate_proj, self.up_proj], x)
        a = self.silu(g) if self.spiking("silu") else F.silu(g)
        if self.spiking("silu") and tracking():  # the SiLU neurons' spikes, like softmax's and RMSNorm's
            with torch.no_grad():
                # one accumulate per input (the cell's base value) besides the spikes; no MACs replaced:
                # ann_macs_per_token counts linear layers and attention products only
                record("SiLU", self.silu.spikes_per_input(g).sum(), g.numel(), 0.0)
        z = self.multiply(a, u) if self.spiking("multiply") else a * u
        if self.config.rotated and self.config.hadamard_mlp_block:
            z = hadamard_transform(z, self.config.hadamard_mlp_block)
        return self.graded(self.down_proj, z, self.spiking("multiply"))


def _rmsnorm(config: BTSpikingConfig) -> SNNRMSNorm:
    return SNNRMSNorm(
        config.hidden_size,
        config.rms_norm_eps,
        mode="spiking",
        square=ShippedApproximator("square"),
        rsqrt=ShippedApproximator("rsqrt"),
    )


class BTSpikingDecoderLayer(_Operators):
    """Pre-norm decoder layer: attention and MLP, each added to the residual stream."""

    def __init__(self, config: BTSpikingConfig, layer_idx: int) -> None:
        super().__init__(config)
        self.self_attn = BTSpikingAttention(config, layer_idx)
        self.mlp = BTSpikingMLP(config)
        self.input_layernorm = _rmsnorm(config)
        self.post_attention_layernorm = _rmsnorm(config)

    def norm(self, module: SNNRMSNorm, x: Tensor) -> Tensor:
        module.mode = self.config.operators["rmsnorm"]
        return module(x)

    def forward(
        self,
        hidden: Tensor,
        position_embeddings: tuple[Tensor, Tensor],
        allowed: Tensor,
        past_key_values: Cache | None = None,
    ) -> Tensor:
        hidden = hidden + self.self_attn(
            self.norm(self.input_layernorm, hidden), position_embeddings, allowed, past_key_values
        )
        return hidden + self.mlp(self.norm(self.post_attention_layernorm, hidden))


class BTSpikingPreTrainedModel(PreTrainedModel):
    """Shared settings of the spiking models (transformers' ``PreTrainedModel``)."""

    config: BTSpikingConfig
    config_class = BTSpikingConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["BTSpikingDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' ``from_pretrained``, refusing a broken model instead of loading it.

        A local folder is checked before transformers reads it: ``config.json``
        must exist and be valid (errors name the file and the field), the weights
        must be safetensors (a pickle such as ``pytorch_model.bin`` is refused,
        never opened), complete, and hold exactly the tensors the config
        implies, with its shapes. After loading, every weight must be finite.

        Raises:
            FileNotFoundError: no config.json, or no weights.
            ValueError: a broken config or weights file (the message names it).
        """
        from ._model_files import check_finite_weights, check_model_folder, read_config_file

        if kwargs.get("use_safetensors") is False:
            raise ValueError(
                "use_safetensors=False would unpickle the weights: bt-neurons loads safetensors only"
            )
        kwargs["use_safetensors"] = True
        where = str(pretrained_model_name_or_path)
        if isinstance(pretrained_model_name_or_path, str | os.PathLike):
            folder = Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "")
            if folder.is_dir() and kwargs.get("variant") is None:
                config = kwargs.get("config")
                if config is None:
                    config = read_config_file(folder)
                if isinstance(config, BTSpikingConfig) and issubclass(cls, BTSpikingForCausalLM):
                    check_model_folder(cls, folder, config)
                where = str(folder)
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except StrictDataclassError as exc:  # a config field's validator: its own error names the field
            raise ValueError(f"{where}: {exc.__cause__ or exc}") from None
        check_finite_weights(loaded[0] if isinstance(loaded, tuple) else loaded, where)
        return loaded

    def set_spiking(
        self, *, timesteps: int | None = None, path: str | None = None, operators: str | dict | None = None
    ) -> BTSpikingPreTrainedModel:
        """Change ``T``, the execution path or the operator modes in place; returns ``self``.

        ``operators`` is a preset name or a partial dict applied on top of the
        current modes (see `operator_modes`).
        """
        from .configuration import operator_modes

        cfg = self.config
        if timesteps is not None:
            if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
                raise ValueError(f"timesteps must be a positive int, got {timesteps!r}")
            cfg.timesteps = timesteps
        if path is not None:
            if path not in ("count", "spike"):
                raise ValueError(f"path must be 'count' or 'spike', got {path!r}")
            cfg.path = path
        if operators is not None:
            checked = operator_modes(operators)  # validates names and modes
            cfg.operators = checked if isinstance(operators, str) else {**cfg.operators, **operators}
        for m in self.modules():
            if isinstance(m, Synapsis):
                m.T = cfg.timesteps
                m.pre.qmax = cfg.timesteps
                m.path = cfg.path
            elif isinstance(m, QSynapsis):  # a model prepared for quantization-aware training (stage 1)
                m.pre.qmax = cfg.timesteps
            elif isinstance(m, SNNMatmul | SNNMultiply):
                m.T = cfg.timesteps
                m.quantizer.qmax = cfg.timesteps
                m.path = cfg.path
        return self


def allowed_positions(attention_mask: Tensor | None, queries: int, keys: int, device: torch.device) -> Tensor:
    """Boolean ``[B or 1, 1, queries, keys]``: causal, minus padded keys; each token sees itself.

    Queries are the last ``queries`` of the ``keys`` positions (a KV cache
    holds the earlier ones). ``attention_mask`` is transformers' 2-D
    ``[B, keys]`` mask (1 = real token, 0 = padding).
    """
    i = torch.arange(queries, device=device).unsqueeze(-1) + (keys - queries)
    j = torch.arange(keys, device=device)
    allowed = (j <= i)[None, None]
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape[-1] != keys:
            raise ValueError(
                f"attention_mask must be [batch, {keys}] (1 = token, 0 = padding), "
                f"got {tuple(attention_mask.shape)}"
            )
        allowed = allowed & attention_mask.bool()[:, None, None, :]
        allowed = allowed | (j == i)[None, None]  # a padded query attends to itself only
    return allowed


def _check_position_ids(position_ids: object, length: int, limit: int) -> None:
    _checks.check_tensor("position_ids", position_ids)
    if position_ids.is_floating_point() or position_ids.dtype == torch.bool or position_ids.is_complex():
        raise TypeError(f"position_ids must be an integer tensor, got {position_ids.dtype}")
    if position_ids.dim() not in (1, 2) or position_ids.shape[-1] != length:
        raise ValueError(
            f"position_ids must have shape [batch or 1, {length}] (one per token), "
            f"got {tuple(position_ids.shape)}"
        )
    if position_ids.numel():
        lo, hi = torch.aminmax(position_ids)
        if int(lo) < 0 or int(hi) >= limit:
            raise ValueError(f"position_ids must lie in [0, {limit}) (max_position_embeddings)")


class BTSpikingModel(BTSpikingPreTrainedModel):
    """The decoder stack: embedding lookup, decoder layers and the final norm."""

    def __init__(self, config: BTSpikingConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(BTSpikingDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = _rmsnorm(config)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.post_init()
        self.set_spiking(path=config.path)  # the operators run on the config's path (a loaded model too)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: Tensor | None = None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """Last hidden states ``[B, L, hidden]`` and the KV cache.

        The cache is taken as ``cache`` or ``past_key_values`` (the name
        depends on the transformers release; see `cache_argument`).
        """
        past_key_values = cache_argument(cache, past_key_values)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            check_input_ids(input_ids, self.config.vocab_size)
            inputs_embeds = self.embed_tokens(input_ids)
        else:
            _checks.check_floating("inputs_embeds", inputs_embeds)
            _checks.check_finite("inputs_embeds", inputs_embeds)
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    f"inputs_embeds must have shape [batch, sequence, {self.config.hidden_size}] "
                    f"(hidden_size), got {tuple(inputs_embeds.shape)}"
                )
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        L = inputs_embeds.shape[1]
        limit = self.config.max_position_embeddings
        if past + L > limit:
            cached = f" after {past} cached ones" if past else ""
            raise ValueError(
                f"input_ids has {L} tokens{cached}, more than the model's {limit} positions "
                "(config.max_position_embeddings)"
            )
        if position_ids is None:
            position_ids = (torch.arange(L, device=inputs_embeds.device) + past).unsqueeze(0)
        else:
            _check_position_ids(position_ids, L, limit)
        allowed = allowed_positions(attention_mask, L, past + L, inputs_embeds.device)
        position_embeddings = self.rotary_emb(inputs_embeds, position_ids=position_ids)
        hidden = inputs_embeds
        cache = past_key_values if use_cache else None
        # the inputs are checked above and the weights on loading: the operators need not scan every
        # activation for NaN / Inf again (one arising inside still stops the next encoder)
        with _checks.values_checked_upstream():
            for layer in self.layers:
                hidden = layer(hidden, position_embeddings, allowed, cache)
            self.norm.mode = self.config.operators["rmsnorm"]
            hidden = self.norm(hidden)
        return with_cache(BaseModelOutputWithPast, cache, last_hidden_state=hidden)


class BTSpikingForCausalLM(BTSpikingPreTrainedModel, GenerationMixin):
    """The spiking causal LM: `BTSpikingModel` and the ``lm_head`` Synapsis.

    Use it like any transformers causal LM: ``model(input_ids).logits``,
    ``model.generate(...)``, ``save_pretrained`` / ``from_pretrained`` (after
    ``import bt_neurons.models``, also through ``AutoModelForCausalLM``).
    `bt_neurons.models.convert` builds one from a Llama or Qwen2 checkpoint.
    """

    _tied_weights_keys = {"lm_head.layer.weight": "model.embed_tokens.weight"}

    def __init__(self, config: BTSpikingConfig) -> None:
        super().__init__(config)
        self.model = BTSpikingModel(config)
        h = config.hidden_size
        self.final_mixer = _synapsis(h, h, False, config) if config.final_mixer else None
        self.lm_head = _synapsis(h, config.vocab_size, False, config)
        self.post_init()
        self.set_spiking(path=config.path)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.layer

    def _head(self, hidden: Tensor) -> Tensor:
        spiking = self.config.operators["linear"] == "spiking"
        mode = self.config.final_mixer_mode
        if self.final_mixer is not None and mode == "factored" and spiking:
            return self._factored_head(hidden)
        if self.final_mixer is not None:
            mixer_spiking = spiking and mode == "spiking"
            hidden = self.final_mixer(hidden) if mixer_spiking else self.final_mixer.layer(hidden)
        return self.lm_head(hidden) if spiking else self.lm_head.layer(hidden)

    def _factored_head(self, hidden: Tensor) -> Tensor:
        r"""``lm_head`` with the weight $W = E' M$ kept as its two factors (``final_mixer_mode="factored"``).

        The final mixer's encoders turn ``hidden`` into counts $\hat x$ (the one
        encoding of the head's input), and the logits are $E' (M \hat x)$:
        the same synapses $W$ and the same spikes as an untied head, without a
        second ``vocab x hidden`` matrix. Spikes and additions are those of $W$.
        """
        mixer = self.final_mixer
        if not isinstance(mixer, Synapsis) or (_hooked(mixer) and not tracking()):
            # a QSynapsis (stage 1), or calibration hooks that watch the forward: the same values
            return self.lm_head.layer(mixer(hidden))
        z, spikes = mixer._pre_activation(hidden)  # M x_hat on the count or spike path, nothing recorded
        if tracking():
            with torch.no_grad():
                tokens, vocab = z.numel() // z.shape[-1], self.config.vocab_size
                G = mixer.pre.group_size
                kept = mixer.layer.in_features // G if G else 0
                record("Synapsis", spikes, spikes * vocab, tokens * (mixer.layer.in_features - kept) * vocab)
        return self.lm_head.layer(z)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | Tensor = 0,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits ``[B, L, vocab]`` (the last ``logits_to_keep`` positions when it is > 0).

        The KV cache is taken as ``cache`` (what transformers' ``generate()``
        passes in current releases) or ``past_key_values`` (earlier releases),
        and returned under the installed release's field name.
        """
        check_logits_to_keep(logits_to_keep)
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache_argument(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        return causal_lm_output(
            out, self._head, self.loss_function, self.config.vocab_size, labels, logits_to_keep, **kwargs
        )
