"""``snntorch.export_to_nir`` learns bt's neurons: its module map is extended, not replaced."""

from __future__ import annotations

from torch import nn

from ._stateful import SnnTorchShell

__all__ = ["teach_snntorch_export"]


def teach_snntorch_export() -> bool:
    """Make ``snntorch.export_nir.export_to_nir`` export bt's snnTorch neurons exactly.

    snnTorch maps modules to NIR with one function,
    ``snntorch.export_nir._extract_snntorch_module``, and offers no registry.
    bt's `EIIF` and `CustomNeuron` are ``snn.Leaky`` subclasses, so that
    function would export them as leaky integrate-and-fire neurons, which they
    are not. This wraps it: a bt neuron is mapped by
    ``bt_neurons.nir`` (its exact NIR block, or a ``ValueError`` naming the
    parameter that has no NIR equivalent), every other module by snnTorch's
    own map. Called when `bt_neurons.snntorch` is imported; a no-op without
    ``nir`` / ``nirtorch`` or when snnTorch's map has another name.

    Returns:
        Whether snnTorch's exporter now knows bt's neurons.
    """
    try:
        from snntorch import export_nir
    except ImportError:  # nir / nirtorch are optional (the "nir" extra)
        return False
    original = getattr(export_nir, "_extract_snntorch_module", None)
    if original is None:  # pragma: no cover - a future snnTorch renamed it; bt_neurons.nir.export still works
        return False
    if getattr(original, "knows_bt_neurons", False):
        return True

    def extract(module: nn.Module):
        if isinstance(module, SnnTorchShell):
            from ..nir import _extract_bt_module

            return _extract_bt_module(module)
        return original(module)

    extract.knows_bt_neurons = True  # type: ignore[attr-defined]
    extract.__doc__ = original.__doc__
    export_nir._extract_snntorch_module = extract
    return True
