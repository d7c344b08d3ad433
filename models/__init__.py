"""Layer 3 of bt-neurons: the spiking language model and its training stages.

Installed as ``bt_neurons.models``. It builds on ``bt_neurons`` and
``bt_neurons.approximators``; the model arrives with its own issue.
"""

__all__: list[str] = []
