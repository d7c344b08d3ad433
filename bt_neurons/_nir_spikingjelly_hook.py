"""SpikingJelly's ``export_to_nir`` learns bt's nodes: its module map is extended, not replaced."""

from __future__ import annotations

from torch import nn

from .custom_neuron_node import CustomNeuronNode
from .eiif_node import EIIFNode

__all__ = ["teach_spikingjelly_export"]


def teach_spikingjelly_export() -> bool:
    """Make ``spikingjelly.activation_based.nir_exchange.export_to_nir`` export bt's nodes exactly.

    SpikingJelly maps modules to NIR through the ``map_dict`` of its private
    ``_ModuleMapper`` and offers no registry; without it, tracing a bt node
    fails ("x must be a torch.Tensor, got Proxy"). This adds `EIIFNode` and
    `CustomNeuronNode` to that map: each is written as its exact NIR block
    by ``bt_neurons.nir`` (or refused with a ``ValueError`` naming the
    parameter that has no NIR equivalent); every other module keeps
    SpikingJelly's own mapping. Called when `bt_neurons` is imported; a no-op
    without ``nir`` / ``nirtorch`` or when SpikingJelly's mapper has changed.

    Returns:
        Whether SpikingJelly's exporter now knows bt's nodes.
    """
    try:
        from spikingjelly.activation_based.nir_exchange import to_nir
    except ImportError:  # nir / nirtorch are optional (the "nir" extra)
        return False
    mapper = getattr(to_nir, "_ModuleMapper", None)
    own = getattr(mapper, "map_dict", None)
    if not isinstance(own, property):  # pragma: no cover - a future SpikingJelly; bt_neurons.nir still works
        return False
    if getattr(own.fget, "knows_bt_neurons", False):
        return True

    def map_dict(self) -> dict:
        def bt_block(module: nn.Module):
            from .nir import _extract_bt_module

            shape = self.module_io_shape.get(module)  # the input shape SpikingJelly traced
            return _extract_bt_module(module, size=None if shape is None else int(shape[-1]), dt=self.dt)

        return {**own.fget(self), EIIFNode: bt_block, CustomNeuronNode: bt_block}

    map_dict.knows_bt_neurons = True  # type: ignore[attr-defined]
    mapper.map_dict = property(map_dict, doc=own.__doc__)
    return True
