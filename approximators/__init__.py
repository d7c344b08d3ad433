"""Layer 2 of bt-neurons: arrays of CustomNeurons that approximate functions.

Installed as ``bt_neurons.approximators``. It builds only on ``bt_neurons``;
the approximators themselves (Square, Sqrt, SiLU, ...) and the fitter arrive
with their own issue.
"""

__all__: list[str] = []
