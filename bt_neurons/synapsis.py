r"""Synapsis and QSynapsis: a linear layer between two layers of EI_IF neurons.

**QSynapsis** (paper eq. 20), the ANN twin used for stage-1 training:
$z = Q_{post}(W\,Q_{pre}(x) + b)$.

**Synapsis** (paper 2.2, eq. 2 and 22): presynaptic EI_IF neurons encode
$x / s_{pre}$ over $T$ steps as spikes $S_t \in \{-1,0,1\}$;
the linear layer adds the weight column of every spike,
$H = \sum_t W S_t = W C_{pre}$; the bias is added once; postsynaptic
EI_IF neurons encode $y / s_{post}$ over $T_{post}$ steps. The
output is the decoded value $s_{post} C_{post}$ (so Synapses chain like
the layers they replace), or the postsynaptic spike trains.

- ``path="count"``: $C_{pre}$ in closed form, then one matrix product
  on the decoded counts, the very operations of the QSynapsis it equals bit
  for bit (paper eq. 22);
- ``path="spike"``: the spike trains, the linear layer applied to the spikes
  of every step and accumulated (`accumulate_spikes`), equal to the count
  path up to float summation order (exactly, when weights and scales are
  dyadic); `accumulate_spikes_reference` does the same with additions
  only.

Scales are per token (dynamic) by default, so no sequence depends on another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _checks
from .accounting import record, tracking
from .functional.eiif import eiif_spikes_from_counts
from .functional.token_quantization import apply_token_scales, quantize_tokens_many_, token_scales
from .quantizer import Quantizer

__all__ = [
    "QSynapsis",
    "Synapsis",
    "accumulate_spikes",
    "accumulate_spikes_reference",
    "quantized_linear",
    "synapses_of_one_input",
]


def accumulate_spikes(spikes: Tensor, weight: Tensor) -> Tensor:
    """``sum_t spikes[t] @ weight.T``: the linear layer applied to every step's spikes.

    Args:
        spikes: ``[T, N, in]`` in {-1, 0, +1}.
        weight: ``[out, in]``.

    Returns:
        ``[N, out]``.
    """
    out = torch.zeros(spikes.shape[1:-1] + (weight.shape[0],), dtype=weight.dtype, device=weight.device)
    for s in spikes:
        out = out + s.to(weight.dtype) @ weight.T
    return out


def accumulate_spikes_reference(spikes: Tensor, weight: Tensor) -> Tensor:
    """The same sum with additions only: each spike adds (or subtracts) its weight column.

    Slow (a Python-level scatter per step); it exists to show and test that a
    Synapsis needs no multiplications.

    Args:
        spikes: ``[T, N, in]`` in {-1, 0, +1}.
        weight: ``[out, in]``.

    Returns:
        ``[N, out]``.
    """
    N = spikes.shape[1]
    out = torch.zeros(N, weight.shape[0], dtype=weight.dtype, device=weight.device)
    columns = weight.T  # [in, out]: the synapses of each presynaptic neuron
    for s in spikes:
        pos = (s > 0).nonzero()
        neg = (s < 0).nonzero()
        out.index_add_(0, pos[:, 0], columns[pos[:, 1]])
        out.index_add_(0, neg[:, 0], -columns[neg[:, 1]])
    return out


def quantized_linear(
    x: Tensor,
    pre: Quantizer,
    weight: Tensor,
    bias: Tensor | None,
    *,
    post: Quantizer | None = None,
    chunk: int = 1 << 17,
) -> Tensor:
    r"""``post(F.linear(pre(x), weight, bias))`` for inference, without the quantized input in full.

    The scales of ``pre`` are found for whole rows of ``x`` (tokens), then the
    quantized input is made a block of at most ``chunk`` elements at a time in
    one small buffer and multiplied into the output. Blocks split the input
    features first (``y = b + sum_k W[:, k] x_hat[k]``, so every product keeps
    all the rows and stays fast) into slices of at least 128 features, and the
    rows only when that is not enough. The output rows are quantized by ``post``
    (if given) as soon as they are complete. The memory is that of the output
    plus one buffer. A ``pre`` with ``group_size`` quantizes a copy of ``x``
    in place (every group a vector of its own) and multiplies it in one
    product. With autograd on, or with quantizers other than dynamic
    symmetric ones, this is the plain straight-through composition.

    Args:
        x: ``[..., in]``.
        pre: the presynaptic quantizer.
        weight: ``[out, in]``; bias: ``[out]`` or None.
        post: the postsynaptic quantizer, or None (output left unquantized).
        chunk: elements of the buffer (default ``2**17``, 512 KiB of float32).

    Returns:
        ``[..., out]``. It equals the composition up to float summation order
        (bit for bit when the input fits one block); the count path of a
        Synapsis and its QSynapsis both use this function, so they agree bit for bit.
    """
    tensors = (x, weight) if bias is None else (x, weight, bias)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    fused_post = post is None or post.per_token_symmetric or post.group_size is not None
    if not grad and pre.group_size is not None and fused_post:
        y = F.linear(
            pre.fake_quantize_(x.detach().clone(memory_format=torch.contiguous_format)), weight, bias
        )
        return y if post is None else post.fake_quantize_(y)
    if grad or not (pre.per_token_symmetric and fused_post):
        y = F.linear(pre(x), weight, bias)
        if post is None:
            return y
        return post(y) if torch.is_grad_enabled() and y.requires_grad else post.fake_quantize_(y)
    rows = x.reshape(-1, x.shape[-1])
    n_rows, n_in = rows.shape
    out = torch.empty(
        n_rows, weight.shape[0], dtype=torch.promote_types(x.dtype, weight.dtype), device=x.device
    )
    k_blocks = 1 if rows.numel() <= chunk else min(-(-rows.numel() // chunk), max(1, n_in // 128))
    k_step = -(-n_in // k_blocks)
    r_step = max(1, chunk // k_step)
    buffer = torch.empty(min(r_step, n_rows) * min(k_step, n_in), dtype=x.dtype, device=x.device)
    wt = weight.t()
    for r0 in range(0, n_rows, r_step):
        source, target = rows[r0 : r0 + r_step], out[r0 : r0 + r_step]
        scale = token_scales(source, pre.qmax, pre.clip_ratio, pre.eps)  # of whole rows
        for k0 in range(0, n_in, k_step):
            k1 = min(k0 + k_step, n_in)
            block = buffer[: source.shape[0] * (k1 - k0)].view(source.shape[0], k1 - k0)  # contiguous
            apply_token_scales(source, scale, pre.qmax, out=block, columns=(k0, k1))
            w_part = wt[k0:k1]
            if k0 > 0:
                target.addmm_(block, w_part)
            elif bias is None:
                torch.mm(block, w_part, out=target)
            else:
                torch.addmm(bias, block, w_part, out=target)
        if post is not None:
            post.fake_quantize_(target)
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _check_input(layer: nn.Linear, x: Tensor) -> None:
    """``x`` ``[..., in]``: floating, at least 1-D (as ``nn.Linear`` needs), on the weight's device, dtype."""
    _checks.check_floating("x", x)
    _checks.check_rank("x", x, 1, f"[..., {layer.in_features}] (in_features last)")
    if x.shape[-1] != layer.in_features:
        raise ValueError(f"x must have {layer.in_features} features in its last axis, got {x.shape[-1]}")
    weight = layer.weight
    _checks.check_same_device("x", x, "the layer's weight", weight)
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"x has dtype {x.dtype} but the layer's weight is {weight.dtype}: cast one to the other "
            f"(x.to({weight.dtype}) or synapsis.to({x.dtype})), as nn.Linear needs"
        )


def _check_ids(layer: nn.Embedding, ids: Tensor) -> None:
    """Token ids of an embedding: an integer tensor with values in ``[0, num_embeddings)``."""
    _checks.check_indices("x", ids, layer.num_embeddings)
    _checks.check_same_device("x", ids, "the embedding's weight", layer.weight)


def _check_layer(layer: nn.Module) -> None:
    if not isinstance(layer, nn.Linear | nn.Embedding):
        raise TypeError(f"layer must be an nn.Linear or nn.Embedding, got {type(layer).__name__}")


def _check_quantizer(name: str, q: object) -> None:
    if q is not None and not isinstance(q, Quantizer):
        raise TypeError(f"{name} must be a bt_neurons.Quantizer or None, got {type(q).__name__}")


class QSynapsis(nn.Module):
    r"""Quantized linear layer: $z = Q_{post}(W Q_{pre}(x) + b)$ (paper eq. 20).

    Args:
        layer: the ``nn.Linear`` (or ``nn.Embedding``, which has no pre-quantizer).
        pre: quantizer of the input (``None``: no quantization).
        post: quantizer of the output (``None``: no quantization).
    """

    def __init__(
        self, layer: nn.Linear | nn.Embedding, pre: Quantizer | None, post: Quantizer | None
    ) -> None:
        super().__init__()
        _check_layer(layer)
        _check_quantizer("pre", pre)
        _check_quantizer("post", post)
        if isinstance(layer, nn.Embedding) and pre is not None:
            raise ValueError("an embedding takes token ids: it has no pre-quantizer (pre must be None)")
        self.layer = layer
        self.pre = pre
        self.post = post

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        bits: int = 8,
        *,
        granularity: str = "token",
        post: bool = True,
    ) -> QSynapsis:
        """Wrap ``linear`` with symmetric per-token dynamic quantizers of ``bits`` bits."""
        _check_layer(linear)
        post = _checks.check_bool("post", post)
        return cls(
            linear,
            Quantizer(bits, granularity=granularity, dynamic=granularity == "token"),
            Quantizer(bits, granularity=granularity, dynamic=granularity == "token") if post else None,
        )

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, bits: int = 8) -> QSynapsis:
        """Wrap ``embedding``: its looked-up vectors are quantized per token."""
        _check_layer(embedding)
        return cls(embedding, None, Quantizer(bits))

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.layer, nn.Embedding):
            _check_ids(self.layer, x)
        else:
            _check_input(self.layer, x)
            if self.pre is not None:
                return quantized_linear(x, self.pre, self.layer.weight, self.layer.bias, post=self.post)
        y = self.layer(x)
        if self.post is None:
            return y
        if torch.is_grad_enabled() and y.requires_grad:
            return self.post(y)
        return self.post.fake_quantize_(y)


class Synapsis(nn.Module):
    r"""EI_IF neurons -> linear layer -> EI_IF neurons (paper 2.2); see the module docs.

    Args:
        layer: the ``nn.Linear`` (or ``nn.Embedding``) whose weights and bias are used.
        timesteps: ``T``, steps of the presynaptic neurons (counts in ``[-T, T]``).
        post_timesteps: steps of the postsynaptic neurons (default ``T``); ``None``
            together with ``post=False`` leaves the output unencoded.
        post: encode the output with postsynaptic neurons.
        pre_quantizer: where the input scales come from (default: a symmetric
            per-token dynamic quantizer with ``qmax = T``); a calibrated static
            quantizer works too. It must be symmetric.
        post_quantizer: where the output scales come from (default: a symmetric
            per-token dynamic quantizer with ``qmax = T_post``); a calibrated
            static quantizer works too. It must be symmetric.
        path: ``"count"`` (default) or ``"spike"``.

    Forward: input ``[..., in]`` (float; for an embedding, ids ``[...]``),
    output ``[..., out]`` decoded values; `spikes` returns the output spike
    trains ``[T_post, ..., out]``.
    """

    def __init__(
        self,
        layer: nn.Linear | nn.Embedding,
        timesteps: int = 15,
        *,
        post_timesteps: int | None = None,
        post: bool = True,
        pre_quantizer: Quantizer | None = None,
        post_quantizer: Quantizer | None = None,
        path: str = "count",
    ) -> None:
        super().__init__()
        _check_layer(layer)
        _check_quantizer("pre_quantizer", pre_quantizer)
        _check_quantizer("post_quantizer", post_quantizer)
        post = _checks.check_bool("post", post)
        T = _checks.check_timesteps("timesteps", timesteps)
        T_post = _checks.check_timesteps(
            "post_timesteps", post_timesteps if post_timesteps is not None else T
        )
        _checks.check_choice("path", path, ("count", "spike"))
        self.layer = layer
        self.embedding = isinstance(layer, nn.Embedding)
        if self.embedding:
            self.pre = None
        else:
            self.pre = pre_quantizer if pre_quantizer is not None else Quantizer(qmax=T)
        self.post = (
            (post_quantizer if post_quantizer is not None else Quantizer(qmax=T_post)) if post else None
        )
        for name, q, steps in (("pre_quantizer", self.pre, T), ("post_quantizer", self.post, T_post)):
            if q is not None:
                if not q.symmetric:
                    raise ValueError(f"{name} must be symmetric: EI_IF neurons fire +1 and -1 symmetrically")
                if q.qmax != steps:
                    raise ValueError(
                        f"{name}.qmax ({q.qmax}) must equal the neurons' time steps ({steps}): "
                        "mismatched bit widths between the QSynapsis and the Synapsis"
                    )
        self.T = T
        self.T_post = T_post if post else None
        self.path = path

    @classmethod
    def from_linear(cls, linear: nn.Linear, timesteps: int = 15, **kwargs) -> Synapsis:
        """A Synapsis with ``linear``'s weight and bias (shared, not copied)."""
        return cls(linear, timesteps, **kwargs)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, timesteps: int = 15, **kwargs) -> Synapsis:
        """A spiking embedding: the looked-up vectors are encoded by EI_IF neurons."""
        return cls(embedding, timesteps, **kwargs)

    @classmethod
    def from_qsynapsis(cls, q: QSynapsis, **kwargs) -> Synapsis:
        """The spiking twin of a (trained) QSynapsis: same layer, same quantizers.

        Its count path equals ``q`` bit for bit (paper eq. 22).
        """
        if not isinstance(q, QSynapsis):
            raise TypeError(f"q must be a QSynapsis, got {type(q).__name__}")
        if q.pre is None and not isinstance(q.layer, nn.Embedding):
            raise ValueError(
                "the QSynapsis has no pre-quantizer: there is nothing for EI_IF neurons to encode"
            )
        T = q.pre.qmax if q.pre is not None else (q.post.qmax if q.post is not None else 15)
        return cls(
            q.layer,
            T,
            post_timesteps=q.post.qmax if q.post is not None else None,
            post=q.post is not None,
            pre_quantizer=q.pre,
            post_quantizer=q.post,
            **kwargs,
        )

    def extra_repr(self) -> str:
        return f"T={self.T}, T_post={self.T_post}, path={self.path!r}, embedding={self.embedding}"

    # -------------------------------------------------------------- paths
    def _pre_activation(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``y = W x_hat + b`` and the number of presynaptic spikes (when spikes are tracked)."""
        if self.embedding:
            _check_ids(self.layer, x)
            return self.layer(x), 0.0
        _check_input(self.layer, x)
        if self.path == "count":
            pre_spikes = self.pre.quantize(x)[0].abs().sum() if tracking() else 0.0
            y = quantized_linear(x, self.pre, self.layer.weight, self.layer.bias)  # what the QSynapsis does
        else:
            counts, scale, _ = self.pre.quantize(x)  # raises on NaN / Inf (the scale is not finite)
            pre_spikes = counts.abs().sum() if tracking() else 0.0
            spikes = eiif_spikes_from_counts(counts, self.T)  # [T, ..., in]
            flat = spikes.reshape(self.T, math.prod(x.shape[:-1]), x.shape[-1])  # rows stated: 0 is legal
            out_shape = (*x.shape[:-1], self.layer.out_features)
            if self.pre.group_size is None:
                y = accumulate_spikes(flat, self.layer.weight).reshape(out_shape) * scale
            else:  # a spike carries its group's scale: sum_g s_g W_g C_g
                y = accumulate_spikes(flat * scale.reshape(1, *flat.shape[1:]), self.layer.weight)
                y = y.reshape(out_shape)
            if self.layer.bias is not None:
                y = y + self.layer.bias
        return y, pre_spikes

    def forward(self, x: Tensor) -> Tensor:
        if self.path == "count" and not self.embedding and not tracking():
            # the fused count path: pre, linear and post a block of rows at a time
            _check_input(self.layer, x)
            return quantized_linear(x, self.pre, self.layer.weight, self.layer.bias, post=self.post)
        y, pre_spikes = self._pre_activation(x)
        if tracking():
            self._record(pre_spikes, y)
        if self.post is None:
            return y
        if torch.is_grad_enabled() and y.requires_grad:
            return self.post(y)
        return self.post.fake_quantize_(y)  # in place: y is not needed any more

    def spikes(self, x: Tensor) -> Tensor:
        """The postsynaptic spike trains ``[T_post, ..., out]``."""
        if self.post is None:
            raise ValueError("this Synapsis has no postsynaptic neurons (post=False)")
        y, _ = self._pre_activation(x)
        counts, _, _ = self.post.quantize(y)
        return eiif_spikes_from_counts(counts, self.T_post)

    def _record(self, pre_spikes: Tensor | float, y: Tensor) -> None:
        with torch.no_grad():
            n_out = y.shape[-1]
            post_spikes = self.post.quantize(y)[0].abs().sum() if self.post is not None else 0.0
            tokens = y.numel() // n_out
            in_features = 1 if self.embedding else self.layer.in_features
            additions = pre_spikes * n_out + (
                y.numel() if getattr(self.layer, "bias", None) is not None else 0
            )
            # with group scales the partial sums of the groups are scaled and added: C / G
            # multiply-accumulates per output stay (they are not replaced)
            G = None if self.embedding else self.pre.group_size
            kept = in_features // G if G else 0
            record("Synapsis", pre_spikes + post_spikes, additions, tokens * (in_features - kept) * n_out)


def _hooked(module: nn.Module) -> bool:
    """Whether forward hooks watch ``module`` (they expect its ``forward`` to run)."""
    from torch.nn.modules import module as torch_module

    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or torch_module._global_forward_hooks
        or torch_module._global_forward_pre_hooks
    )


def _share_encoding(synapses: Sequence[Synapsis], x: Tensor) -> bool:
    """Whether `synapses_of_one_input` can encode ``x`` once for all of ``synapses``."""
    first = synapses[0]
    if tracking() or first.embedding or first.pre.group_size is None or any(map(_hooked, synapses)):
        return False
    grad = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for s in synapses for p in s.layer.parameters())
    )
    if grad:
        return False
    for s in synapses:
        pre = s.pre
        if s.path != "count" or s.post is not None or s.embedding or pre._observing or pre.learns_clip:
            return False
        if not (pre.symmetric and pre.dynamic and pre.granularity == "token"):
            return False
        if (pre.group_size, pre.qmax, pre.eps) != (first.pre.group_size, first.pre.qmax, first.pre.eps):
            return False
        if s.layer.in_features != first.layer.in_features:
            return False
    return True


def synapses_of_one_input(synapses: Sequence[Synapsis], x: Tensor) -> list[Tensor]:
    """``[s(x) for s in synapses]``, encoding ``x`` once when the synapses' encoders allow it.

    The queries, keys and values of an attention layer (or a gated MLP's gate and
    up projections) read one input; their presynaptic EI_IF encoders differ only
    in their clip ratios, so the largest magnitude of every token and group is
    found once and each encoder's counts are written in the same pass
    (`quantize_tokens_many_`). That holds for count-path synapses without
    postsynaptic neurons, with dynamic per-token-and-group scales of one group
    size, at inference (no autograd, spikes not tracked, no forward hooks on
    the synapses: calibration and tracing hooks see every call); otherwise
    every synapse runs on its own. Either way the outputs are those of
    ``[s(x) for s in synapses]``, bit for bit.

    Args:
        synapses: one or more `Synapsis` reading ``x``.
        x: ``[..., in_features]``.

    Returns:
        One output ``[..., out_features]`` per synapse.
    """
    synapses = list(synapses)
    if not synapses or not all(isinstance(s, Synapsis) for s in synapses):
        raise TypeError("synapses must be a non-empty sequence of bt_neurons.Synapsis")
    if not _share_encoding(synapses, x):
        return [s(x) for s in synapses]
    first = synapses[0]
    _check_input(first.layer, x)
    pre = first.pre
    xg = pre.grouped(x.detach().contiguous())  # every group a vector of its own
    encoded = torch.empty((len(synapses), *xg.shape), dtype=x.dtype, device=x.device)
    quantize_tokens_many_(xg, encoded, pre.qmax, [s.pre.clip_ratio for s in synapses], pre.eps)
    encoded = encoded.view(len(synapses), *x.shape)
    return [F.linear(encoded[r], s.layer.weight, s.layer.bias) for r, s in enumerate(synapses)]
