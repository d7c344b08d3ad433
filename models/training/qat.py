r"""Stage 1: quantized-ANN training (paper 3.1 and 3.3.1, eq. 23).

`prepare_qat` turns a model into its quantized ANN twin, in place:

- every ``nn.Linear`` becomes a `QSynapsis`: a symmetric pre-quantizer with
  ``Q = T`` levels each side (the EI_IF neurons it will become), the linear
  layer, and optionally a post-quantizer;
- every `Synapsis` (for instance in a model from
  `convert`) becomes the `QSynapsis` it is the spiking twin of, sharing its
  layer and quantizers;
- every module whose type is listed in ``activations`` is followed by a
  `Quantizer` (a `QuantizedActivation`): the activation quantization points
  that stage 2 turns into EI_IF neurons.

Quantizers use the straight-through estimator (eq. 23), so the result trains
with an ordinary PyTorch loop or a transformers ``Trainer``. The spiking
products of a `BTSpikingForCausalLM` (`SNNMatmul`, `SNNMultiply`) are
quantized in their count path already and train with the same estimator.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor, nn

from bt_neurons import QSynapsis, Quantizer, Synapsis, _checks

__all__ = ["QuantizedActivation", "prepare_qat", "resolve_levels"]


class QuantizedActivation(nn.Module):
    """An activation followed by its quantizer: ``quantizer(activation(x))``.

    Args:
        activation: the wrapped module (``nn.ReLU``, ``nn.SiLU``, ...).
        quantizer: a symmetric `Quantizer` (``qmax`` = the time steps of the
            EI_IF neurons it becomes).
    """

    def __init__(self, activation: nn.Module, quantizer: Quantizer) -> None:
        super().__init__()
        self.activation = activation
        self.quantizer = quantizer

    def forward(self, x: Tensor) -> Tensor:
        return self.quantizer(self.activation(x))


def resolve_levels(bits: int | None, timesteps: int | None) -> int:
    """The largest level ``Q`` from either ``bits`` (``2^(b-1) - 1``) or ``timesteps`` (``T``)."""
    if (bits is None) == (timesteps is None):
        raise ValueError("give exactly one of bits (b >= 2) and timesteps (T >= 1)")
    if bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < 2:
            raise ValueError(f"bits must be an int >= 2, got {bits!r}")
        return 2 ** (bits - 1) - 1
    return _checks.check_timesteps("timesteps", timesteps)


def _quantizer(levels: int, granularity: str) -> Quantizer:
    return Quantizer(qmax=levels, granularity=granularity, dynamic=granularity == "token")


def prepare_qat(
    model: nn.Module,
    *,
    bits: int | None = None,
    timesteps: int | None = None,
    granularity: str = "token",
    post: bool = False,
    activations: Iterable[type[nn.Module]] = (),
    skip: Iterable[str] = (),
) -> nn.Module:
    """Swap ``model``'s linear layers and activation points for their quantized twins, in place.

    Args:
        model: any ``nn.Module`` (a SpikingJelly or snnTorch net, a Hugging Face
            model, a `BTSpikingForCausalLM`).
        bits: bit width ``b`` of the quantizers (``Q = 2^(b-1) - 1`` levels each side);
        timesteps: or the time steps ``T`` of the EI_IF neurons they stand for (``Q = T``).
            Exactly one of the two.
        granularity: ``"token"`` (default; dynamic per-token scales, no calibration
            needed), ``"channel"`` or ``"tensor"`` (static: calibrate them with
            `Quantizer.calibrating` before training).
        post: give each new `QSynapsis` a post-quantizer too (paper eq. 20).
            Default False: the next layer's pre-quantizer encodes the output.
        activations: module types after which a `Quantizer` is inserted
            (e.g. ``(nn.ReLU,)``). Default none.
        skip: qualified names of modules to leave alone (e.g. ``("lm_head",)``).

    Returns:
        ``model`` itself. Existing `Synapsis` modules keep their own quantizers
        (their ``T`` must equal the requested levels); `QSynapsis` modules are
        left as they are.

    Raises:
        ValueError: nothing in ``model`` could be quantized, or an existing
            `Synapsis` has other time steps than requested.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Linear | Synapsis):  # it has no parent to be swapped in
        raise ValueError(
            f"model is itself a {type(model).__name__}: prepare_qat swaps the layers inside a model in "
            "place; wrap it (nn.Sequential(layer)) or build a QSynapsis from it directly"
        )
    levels = resolve_levels(bits, timesteps)
    _checks.check_choice("granularity", granularity, ("token", "channel", "tensor"))
    if isinstance(activations, type):
        raise TypeError(f"activations must be a list of module types, e.g. ({activations.__name__},)")
    activation_types = tuple(activations)
    for t in activation_types:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise TypeError(f"activations must be nn.Module subclasses, got {t!r}")
    if isinstance(skip, str):
        raise TypeError(f"skip must be a list of module names, e.g. ({skip!r},), not a single string")
    skipped = set(skip)
    unknown = skipped - {name for name, _ in model.named_modules()}
    if unknown:
        raise ValueError(f"skip names modules that are not in the model: {sorted(unknown)}")

    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    renamed: dict[str, str] = {}  # parameter prefixes that move down a level (x.weight -> x.layer.weight)
    for parent_name, parent in model.named_modules():
        if isinstance(parent, QSynapsis | Synapsis | QuantizedActivation):
            continue  # their insides are already quantized
        for child_name, child in parent.named_children():
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if name in skipped:
                continue
            new: nn.Module | None = None
            if isinstance(child, Synapsis):
                if child.T != levels:
                    raise ValueError(
                        f"mismatched bit widths between stages: {name} is a Synapsis with T={child.T}, "
                        f"but {levels} levels were asked for"
                    )
                new = QSynapsis(child.layer, child.pre, child.post)
            elif isinstance(child, nn.Linear):  # SpikingJelly's layer.Linear too
                post_q = _quantizer(levels, granularity) if post else None
                new = QSynapsis(child, _quantizer(levels, granularity), post_q)
                renamed[f"{name}."] = f"{name}.layer."
            elif activation_types and isinstance(child, activation_types):
                new = QuantizedActivation(child, _quantizer(levels, granularity))
            if new is not None:
                swaps.append((parent, child_name, new))
    if not swaps:
        raise ValueError(
            "model has nothing to quantize: no nn.Linear, Synapsis or listed activation outside `skip`"
        )
    for parent, child_name, new in swaps:
        setattr(parent, child_name, new)
    _rename_tied_keys(model, renamed)
    return model


def _rename_tied_keys(model: nn.Module, renamed: dict[str, str]) -> None:
    """Keep a transformers model's maps of tied parameters pointing at them (so ``save_pretrained`` works)."""

    def rename(key: str) -> str:
        for old, new in renamed.items():
            if key.startswith(old) and not key.startswith(new):
                return new + key[len(old) :]
        return key

    for attribute in ("all_tied_weights_keys", "_tied_weights_keys"):
        tied = getattr(model, attribute, None)
        if isinstance(tied, dict) and renamed:
            setattr(model, attribute, {rename(k): rename(v) for k, v in tied.items()})
