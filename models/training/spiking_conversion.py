r"""Stage 2: exact conversion of the trained quantized ANN into a spiking network (paper 3.3.2).

`to_spiking` replaces, in place,

- every `QSynapsis` by the `Synapsis` with the same layer (weights and bias kept,
  not copied) and the same quantizers: presynaptic EI_IF neurons with
  ``T = Q`` steps, and postsynaptic ones where the QSynapsis had a post-quantizer;
- every `QuantizedActivation` by the activation followed by an `EIIFEncoder`
  (EI_IF neurons with the quantizer's scales).

The count path of the result computes the very operations of the quantized
ANN, so its outputs are equal bit for bit (paper eq. 22); the spike path
simulates the neurons and equals the count path up to float summation order.
A `BTSpikingPreTrainedModel` is switched to ``path`` as a whole (its spiking
products too).
"""

from __future__ import annotations

from torch import nn

from bt_neurons import EIIFEncoder, QSynapsis, Synapsis, _checks

from .qat import QuantizedActivation

__all__ = ["to_spiking"]


def _levels(module: QSynapsis) -> set[int]:
    return {q.qmax for q in (module.pre, module.post) if q is not None}


def to_spiking(model: nn.Module, *, path: str = "count", timesteps: int | None = None) -> nn.Module:
    """Turn ``model``'s quantized twins into spiking modules, in place; returns ``model``.

    Args:
        model: a model prepared by `prepare_qat` (and trained).
        path: ``"count"`` (default) or ``"spike"`` for every converted module.
        timesteps: the ``T`` the caller expects. When given, every quantizer
            must have ``qmax == T``: a different bit width means the model was
            trained for another ``T`` and is refused.

    Raises:
        ValueError: nothing to convert, or mismatched bit widths.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    _checks.check_choice("path", path, ("count", "spike"))
    if timesteps is not None:
        _checks.check_timesteps("timesteps", timesteps)

    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    for parent_name, parent in model.named_modules():
        for child_name, child in parent.named_children():
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, QSynapsis):
                levels = _levels(child)
                if timesteps is not None and levels - {timesteps}:
                    raise ValueError(
                        f"mismatched bit widths between stages: {name} was trained with {sorted(levels)} "
                        f"levels, but timesteps={timesteps}"
                    )
                if child.pre is None and not isinstance(child.layer, nn.Embedding):
                    raise ValueError(
                        f"{name} has no pre-quantizer: there is nothing for EI_IF neurons to encode"
                    )
                if child.pre is not None and not child.pre.symmetric:
                    raise ValueError(f"{name}'s quantizer is asymmetric: EI_IF neurons need symmetric levels")
                swaps.append((parent, child_name, Synapsis.from_qsynapsis(child, path=path)))
            elif isinstance(child, QuantizedActivation):
                q = child.quantizer
                if timesteps is not None and q.qmax != timesteps:
                    raise ValueError(
                        f"mismatched bit widths between stages: {name} was trained with {q.qmax} levels, "
                        f"but timesteps={timesteps}"
                    )
                swaps.append((parent, child_name, nn.Sequential(child.activation, EIIFEncoder(q, path=path))))
    if not swaps:
        raise ValueError(
            "model has nothing to convert: it holds no QSynapsis or QuantizedActivation "
            "(run prepare_qat first)"
        )
    for parent, child_name, new in swaps:
        setattr(parent, child_name, new)
    set_spiking = getattr(model, "set_spiking", None)
    if callable(set_spiking):  # a BTSpikingPreTrainedModel: its spiking products follow the path too
        model.set_spiking(path=path)
    return model
