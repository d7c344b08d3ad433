r"""SpikingBERT (Bal and Sengupta, AAAI 2024): a BERT encoder of IF neurons, as transformers classes.

Every activation is a layer of IF neurons with soft reset and leak 1
(SpikingJelly's ``IFNode`` with ``v_reset=None``): ``u <- u + c``,
``s = [u >= V_th]``, ``u <- u - V_th s``. The embedding output ``c_0``
(word + position + type embeddings, LayerNorm) is a constant current at every
step. With ``S`` the spikes of one step, an encoder block is six layers of
neurons:

$$
\begin{aligned}
S_K &= \mathrm{IF}(W_K S_{in}), \quad S_V = \mathrm{IF}(W_V S_{in}), \quad Q = W_Q S_{in} \ \text{(real)} \\
S_A &= \mathrm{IF}\big(\mathrm{softmax}(Q S_K^\top / \sqrt{d_h} + \text{mask})\, S_V\big)
  \quad \text{(per head)} \\
S_R &= \mathrm{IF}\big(\mathrm{LN}(W_O S_A + S_{in})\big), \quad
S_I = \mathrm{IF}(W_I S_R), \quad
S_{out} = \mathrm{IF}\big(\mathrm{LN}(W_2 S_I + S_R)\big)
\end{aligned}
$$

(``S_I`` takes the place of BERT's GELU: an IF neuron's rate is a clipped
ReLU of its current). After ``T`` steps a layer's output is its average
spiking rate (ASR) ``a = (1 / T) \sum_t S[t]``; the classifier reads the last
block's ASR of the first ([CLS]) token. At equilibrium the rates satisfy the
rate map ``a_j = clamp(f_j(a_{<j}) / V_th, 0, 1)`` (`equilibrium`), through
which training differentiates (``gradient="implicit"``), or the simulation is
differentiated step by step with the surrogate (``"bptt"``). With
``spiking=False`` the model is the rate network itself: the ANN twin.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import neuron, surrogate
from torch import Tensor, nn
from torch.nn import functional as F

from bt_neurons import _checks
from bt_neurons.accounting import record, tracking

from .._inputs import check_input_ids
from .._safe_loading import SafetensorsOnlyMixin
from .configuration import SpikingBertConfig
from .equilibrium import SolverStats, clipped_rate, implicit_rates, straight_through_rate

from transformers import PreTrainedModel  # noqa: E402  isort: skip
from transformers.utils import ModelOutput  # noqa: E402  isort: skip

__all__ = [
    "LAYER_NEURONS",
    "SpikingBertClassifierOutput",
    "SpikingBertForSequenceClassification",
    "SpikingBertLayer",
    "SpikingBertModel",
    "SpikingBertModelOutput",
    "SpikingBertPreTrainedModel",
]

#: The six layers of IF neurons of an encoder block, in the order they fire.
LAYER_NEURONS = ("key", "value", "attention", "attention_output", "intermediate", "output")

#: ``fire(name, current) -> output``: what a layer of neurons passes on, given its input current.
Fire = Callable[[str, Tensor], Tensor]


@dataclass
class SpikingBertModelOutput(ModelOutput):
    """What `SpikingBertModel` returns.

    Attributes:
        last_hidden_state: the last block's average spiking rates ``[B, L, d]``.
        hidden_states: with ``output_hidden_states``, the rates of the embedding
            neurons and of each block's output, ``num_hidden_layers + 1`` of ``[B, L, d]``.
        attentions: with ``output_attentions``, each block's attention
            probabilities ``[B, heads, L, L]`` at the rates.
        attention_scores: with ``output_attentions``, the scores before the
            softmax, ``Q a_K^T / sqrt(d_h)`` (masked keys at the dtype's minimum).
        spike_count: spikes fired per sequence ``[B]``, over all neurons, steps
            and unpadded tokens (None for the ANN twin).
    """

    last_hidden_state: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    attention_scores: tuple[Tensor, ...] | None = None
    spike_count: Tensor | None = None


@dataclass
class SpikingBertClassifierOutput(ModelOutput):
    """What `SpikingBertForSequenceClassification` returns: ``loss`` (with labels), ``logits``, and the rest.

    ``hidden_states``, ``attentions``, ``attention_scores`` and ``spike_count``
    are `SpikingBertModelOutput`'s.
    """

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    attention_scores: tuple[Tensor, ...] | None = None
    spike_count: Tensor | None = None


class SpikingBertEmbeddings(nn.Module):
    """BERT's embeddings (word + position + token type, then LayerNorm): the constant input current."""

    def __init__(self, config: SpikingBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        """``[B, L]`` ids and types -> ``[B, L, d]`` current."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.LayerNorm(x + self.token_type_embeddings(token_type_ids))


class SpikingBertLayer(nn.Module):
    """One encoder block: its weights, and how the currents of its six layers of neurons are formed."""

    def __init__(self, config: SpikingBertConfig) -> None:
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        self.heads, self.head_size = config.num_attention_heads, config.head_size
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.attention_dense = nn.Linear(d, d)
        self.attention_norm = nn.LayerNorm(d, eps=eps)
        self.intermediate = nn.Linear(d, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, d)
        self.output_norm = nn.LayerNorm(d, eps=eps)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, self.head_size)).transpose(1, 2)  # [B, H, L, d_h]

    def scores(self, inputs: Tensor, keys: Tensor, mask: Tensor) -> Tensor:
        """``Q K^T / sqrt(d_h) + mask`` ``[B, H, L, L]`` with ``Q = W_Q inputs``."""
        q = self._heads(self.query(inputs))
        return q @ self._heads(keys).transpose(-1, -2) / math.sqrt(self.head_size) + mask

    def forward(self, inputs: Tensor, mask: Tensor, fire: Fire) -> Tensor:
        """The block's output, each layer's current passed through ``fire(name, current)``.

        Args:
            inputs: ``[B, L, d]``, spikes of one step (or rates).
            mask: additive attention mask ``[B, 1, 1, L]``.
            fire: what each layer of neurons (`LAYER_NEURONS`) passes on.
        """
        keys = fire("key", self.key(inputs))
        values = fire("value", self.value(inputs))
        probs = self.scores(inputs, keys, mask).softmax(-1)
        context = (probs @ self._heads(values)).transpose(1, 2).flatten(2)
        attended = fire("attention", context)
        residual = fire("attention_output", self.attention_norm(self.attention_dense(attended) + inputs))
        hidden = fire("intermediate", self.intermediate(residual))
        return fire("output", self.output_norm(self.output_dense(hidden) + residual))


class SpikingBertPreTrainedModel(SafetensorsOnlyMixin, PreTrainedModel):
    """Shared settings of the SpikingBERT models (transformers' ``PreTrainedModel``)."""

    config: SpikingBertConfig
    config_class = SpikingBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = False
    _no_split_modules = ["SpikingBertLayer"]


def _neuron_name(layer: int, name: str) -> str:
    return f"{layer}_{name}"


def _check_mask_like(name: str, value: object, input_ids: Tensor, upper: int) -> Tensor:
    """An integer (or bool) tensor shaped like ``input_ids`` with values in ``[0, upper)``."""
    _checks.check_tensor(name, value)
    if value.shape != input_ids.shape:
        raise ValueError(
            f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(value.shape)}"
        )
    if value.dtype.is_floating_point or value.dtype.is_complex:
        raise TypeError(f"{name} must be an integer or bool tensor, got {value.dtype}")
    if value.numel() and not _checks.tracing():
        lo, hi = torch.aminmax(value.long())
        if int(lo) < 0 or int(hi) >= upper:
            raise ValueError(f"{name} must hold values in [0, {upper - 1}], got {int(lo)}..{int(hi)}")
    return value.long()


class SpikingBertModel(SpikingBertPreTrainedModel):
    """The SpikingBERT encoder: ``[B, L]`` ids -> average spiking rates ``[B, L, d]`` of the last block."""

    def __init__(self, config: SpikingBertConfig) -> None:
        super().__init__(config)
        self.embeddings = SpikingBertEmbeddings(config)
        self.layer = nn.ModuleList(SpikingBertLayer(config) for _ in range(config.num_hidden_layers))
        names = ["embedding"] + [
            _neuron_name(i, n) for i in range(config.num_hidden_layers) for n in LAYER_NEURONS
        ]
        self.neurons = nn.ModuleDict(
            {
                n: neuron.IFNode(
                    v_threshold=config.v_threshold,
                    v_reset=None,
                    surrogate_function=surrogate.ATan(alpha=config.surrogate_alpha),
                    step_mode="s",
                )
                for n in names
            }
        )
        #: The last implicit backward solve (an iterative ``implicit_solver``), or None.
        self.last_solve: SolverStats | None = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @property
    def neuron_names(self) -> list[str]:
        """Every layer of neurons, in firing order: ``"embedding"``, then ``"<block>_<layer>"``."""
        return list(self.neurons)

    def _propagate(self, current: Tensor, mask: Tensor, fire: Callable[[str, Tensor], Tensor]) -> Tensor:
        """Run the embedding neurons and every block once, ``fire(neuron_name, current)`` at each layer."""
        x = fire("embedding", current)
        for i, block in enumerate(self.layer):
            x = block(x, mask, lambda name, c, i=i: fire(_neuron_name(i, name), c))
        return x

    def _simulate(self, current: Tensor, mask: Tensor, steps: int) -> dict[str, Tensor]:
        """Spike counts of every layer over ``steps`` steps (through the graph if grad is enabled)."""
        counts: dict[str, Tensor] = {}

        def fire(name: str, c: Tensor) -> Tensor:
            # membranes in float32 whatever the currents' precision (autocast, a bfloat16 model): a spike
            # is exact in any dtype, a bfloat16 membrane would round the charge it accumulates
            spikes = self.neurons[name](c.float() if c.dtype in (torch.bfloat16, torch.float16) else c)
            counts[name] = spikes if name not in counts else counts[name] + spikes
            return spikes.to(c.dtype)

        sj_functional.reset_net(self.neurons)
        try:
            for _ in range(steps):
                self._propagate(current, mask, fire)
        finally:
            sj_functional.reset_net(self.neurons)
        if tracking():
            self._record_costs(counts, mask, steps)
        return counts

    def _record_costs(self, counts: dict[str, Tensor], mask: Tensor, steps: int) -> None:
        r"""Spikes, synaptic additions and dense MACs of one simulation, for `track_spikes`.

        Per unpadded token, a spike of a block's input adds a column of
        ``W_Q``, ``W_K``, ``W_V`` (``3d``) and enters the residual sum (1); of
        ``S_K`` or ``S_V``, one addition per query (``L``: the real ``Q`` read
        against a key spike, the probabilities summed over value spikes); of
        ``S_A`` a column of ``W_O`` (``d``); of ``S_R`` one of ``W_I``
        (``d_ff``) and the residual (1); of ``S_I`` one of ``W_2`` (``d``). The
        last block's output reaches only the classifier. Dense per step and
        token: the two LayerNorms (``2 x 2d``) and the softmax (``H L``). The
        ANN twin's MACs are BERT's: ``4 d^2 + 2 d d_ff + 2 L d`` per token and block.
        """
        config = self.config
        valid = mask[:, 0, 0, :] == 0  # [B, L]
        tokens = float(valid.sum())
        length = mask.shape[-1]
        d, d_ff, blocks = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        fan_out = {"key": length, "value": length, "attention": d, "attention_output": d_ff + 1}
        fan_out |= {"intermediate": d, "output": 3 * d + 1}
        for name, count in counts.items():
            block, _, layer = name.partition("_")
            if name == "embedding":
                layer, block = "output", "-1"
            spikes = float((count.detach().sum(-1) * valid).sum())
            last = layer == "output" and int(block) == blocks - 1
            macs = 0.0
            if layer == "output" and int(block) >= 0:  # the ANN twin's cost of one block, charged once
                macs = tokens * (4 * d * d + 2 * d * d_ff + 2 * length * d)
            dense = (
                steps * tokens * (2 * 2 * d + config.num_attention_heads * length) if layer == "key" else 0.0
            )
            record(f"spikingbert.{name}", spikes, 0.0 if last else spikes * fan_out[layer], macs, dense)

    def rate_map(self, current: Tensor, mask: Tensor, rates: dict[str, Tensor]) -> dict[str, Tensor]:
        """``F(a)``: the equilibrium rate each layer fires, given the rates ``a`` of the layers feeding it."""
        mapped: dict[str, Tensor] = {}
        v_th = self.config.v_threshold

        def fire(name: str, c: Tensor) -> Tensor:
            mapped[name] = clipped_rate(c, v_th)
            return rates[name]

        self._propagate(current, mask, fire)
        return mapped

    def _rates(self, current: Tensor, mask: Tensor, steps: int) -> tuple[dict[str, Tensor], Tensor | None]:
        """Every layer's rate (differentiable as configured) and the spike counts' total per token."""
        config, v_th = self.config, self.config.v_threshold
        if not config.spiking:  # the ANN twin: the rate network, chained
            rates: dict[str, Tensor] = {}

            def chained(name: str, c: Tensor) -> Tensor:
                rates[name] = clipped_rate(c, v_th)
                return rates[name]

            self._propagate(current, mask, chained)
            return rates, None
        wants_grad = torch.is_grad_enabled() and (
            current.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        if wants_grad and config.gradient == "bptt":
            counts = self._simulate(current, mask, steps)
            rates = {n: c / steps for n, c in counts.items()}
        else:
            with torch.no_grad():
                counts = self._simulate(current.detach(), mask, steps)
            simulated = {n: c / steps for n, c in counts.items()}
            if not wants_grad:
                rates = simulated
            elif config.implicit_solver == "exact":
                rates = {}

                def straight_through(name: str, c: Tensor) -> Tensor:
                    rates[name] = straight_through_rate(simulated[name], c, v_th)
                    return rates[name]

                self._propagate(current, mask, straight_through)
            else:
                rates = implicit_rates(
                    lambda a: self.rate_map(current, mask, a),
                    simulated,
                    solver=config.implicit_solver,
                    max_iter=config.solver_max_iter,
                    tol=config.solver_tol,
                    on_solve=lambda stats: setattr(self, "last_solve", stats),
                )
        per_token = sum(c.detach().sum(-1) for c in counts.values())
        return rates, per_token

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        *,
        time_steps: int | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> SpikingBertModelOutput:
        """Average spiking rates of the last block ``[B, L, d]`` for token ids ``[B, L]``.

        Args:
            input_ids: ``[B, L]`` token ids, ``L <= max_position_embeddings``.
            attention_mask: ``[B, L]``, 1 for tokens and 0 for padding (default all ones).
            token_type_ids: ``[B, L]`` segment ids (default all zeros).
            time_steps: steps to simulate (default ``config.time_steps``).
            output_hidden_states: also return the rates of every block's output.
            output_attentions: also return the attention probabilities and scores at the rates.
            return_dict: ignored (a `SpikingBertModelOutput` is always returned).
            **kwargs: other arguments transformers passes (ignored).
        """
        config = self.config
        input_ids = check_input_ids(input_ids, config.vocab_size)
        if input_ids.shape[1] > config.max_position_embeddings:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} tokens, more than max_position_embeddings "
                f"({config.max_position_embeddings}): truncate the text"
            )
        steps = config.time_steps if time_steps is None else _checks.check_timesteps("time_steps", time_steps)
        mask = (
            torch.ones_like(input_ids)
            if attention_mask is None
            else _check_mask_like("attention_mask", attention_mask, input_ids, 2)
        )
        types = (
            torch.zeros_like(input_ids)
            if token_type_ids is None
            else _check_mask_like("token_type_ids", token_type_ids, input_ids, config.type_vocab_size)
        )
        current = self.embeddings(input_ids, types)
        additive = (1.0 - mask[:, None, None, :].to(current.dtype)) * torch.finfo(current.dtype).min
        rates, per_token = self._rates(current, additive, steps)
        last = rates[_neuron_name(config.num_hidden_layers - 1, "output")]
        hidden = None
        if output_hidden_states:
            hidden = (rates["embedding"], *(rates[_neuron_name(i, "output")] for i in range(len(self.layer))))
        scores = probs = None
        if output_attentions:
            inputs = [
                rates["embedding"],
                *(rates[_neuron_name(i, "output")] for i in range(len(self.layer) - 1)),
            ]
            scores = tuple(
                block.scores(x, rates[_neuron_name(i, "key")], additive)
                for i, (block, x) in enumerate(zip(self.layer, inputs, strict=True))
            )
            probs = tuple(s.softmax(-1) for s in scores)
        spikes = None if per_token is None else (per_token * mask.to(per_token.dtype)).sum(-1)
        return SpikingBertModelOutput(
            last_hidden_state=last,
            hidden_states=hidden,
            attentions=probs,
            attention_scores=scores,
            spike_count=spikes,
        )


class SpikingBertForSequenceClassification(SpikingBertPreTrainedModel):
    """SpikingBERT with a linear classifier on the [CLS] token's rate: ``logits = W dropout(a_CLS) + b``.

    (The paper writes ``Linear(ReLU(a_CLS))``: a rate is never negative, so the
    ReLU is the identity.) With ``config.teacher_hidden_size`` set the model
    also holds ``fit_dense``, the learned map of the hidden-state distillation
    loss (`bt_neurons.models.spikingbert.distillation`), so that it is saved
    and loaded with the model between distillation stages.
    """

    def __init__(self, config: SpikingBertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = SpikingBertModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.fit_dense = (
            nn.Linear(config.hidden_size, config.teacher_hidden_size)
            if config.teacher_hidden_size is not None
            else None
        )
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        *,
        time_steps: int | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> SpikingBertClassifierOutput:
        """Logits ``[B, num_labels]``; with ``labels`` ``[B]``, the loss too.

        The loss follows transformers' sequence classifiers: mean squared error
        for one label (regression), cross-entropy for class ids.

        Args:
            input_ids: ``[B, L]`` token ids.
            attention_mask: ``[B, L]``, 1 for tokens, 0 for padding.
            token_type_ids: ``[B, L]`` segment ids.
            labels: ``[B]`` class ids in ``[0, num_labels)`` (floats for one label).
            time_steps: steps to simulate (default ``config.time_steps``).
            output_hidden_states: also return every block's rates.
            output_attentions: also return the attention probabilities and scores.
            return_dict: ignored (a `SpikingBertClassifierOutput` is always returned).
            **kwargs: other arguments transformers passes (ignored).
        """
        out = self.bert(
            input_ids,
            attention_mask,
            token_type_ids,
            time_steps=time_steps,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        logits = self.classifier(self.dropout(out.last_hidden_state[:, 0]))
        loss = None
        if labels is not None:
            _checks.check_tensor("labels", labels)
            if labels.shape != logits.shape[:1]:
                raise ValueError(
                    f"labels must have shape [{logits.shape[0]}] (one per sequence), "
                    f"got {tuple(labels.shape)}"
                )
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                labels = _checks.check_indices("labels", labels, self.num_labels)
                loss = F.cross_entropy(logits, labels)
        return SpikingBertClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            attention_scores=out.attention_scores,
            spike_count=out.spike_count,
        )
