"""`SpikeGPTConfig`: the configuration of the SpikeGPT spiking RWKV language model."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig  # noqa: E402

from bt_neurons import _checks

from .. import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)

__all__ = ["NEURONS", "SpikeGPTConfig"]

#: The neurons a SpikeGPT block can put on its output branches.
NEURONS = ("lif", "eiif", "none")


@strict
class SpikeGPTConfig(PreTrainedConfig):
    r"""Configuration of `SpikeGPTModel` / `SpikeGPTForCausalLM` (model type ``"spikegpt"``).

    Architecture (SpikeGPT, arXiv 2302.13939): ``vocab_size`` (50277: the
    GPT-NeoX tokenizer of the released 216M model), ``hidden_size`` ``d``,
    ``num_hidden_layers``, ``ffn_multiplier`` (the SRFFN's hidden width is
    ``ffn_multiplier * d``, default 4, see `intermediate_size`),
    ``layer_norm_eps``, ``tie_word_embeddings`` (default False, as released).

    Spiking:

    - ``neuron``: the neuron on each block's two output branches,
      ``x = x + N(att(ln1(x)))``, ``x = x + N(ffn(ln2(x)))``, stepping along
      the token axis (each token is one time step):

      - ``"lif"`` (default, the paper): SpikingJelly's ``LIFNode`` with
        ``tau = lif_tau`` (2.0), ``v_threshold = lif_threshold`` (1.0), hard
        reset to 0, ``decay_input=True``, arctan surrogate; spikes in {0, 1};
      - ``"eiif"``: bt-neurons' `EIIFNode`, signed spikes in {-1, 0, +1} on the
        residual stream, with a fixed threshold ``eiif_threshold`` (1.0; the
        adaptive ``alpha`` is 0, since a threshold growing with the token index
        would silence long sequences), attenuation ``eiif_attenuation``
        (``r`` = 0.5: half the membrane is kept, as with the LIF's tau = 2),
        soft reset (the crossed threshold is subtracted), arctan surrogate;
      - ``"none"``: the ANN twin, the branches are added as they are.
    - ``binary_embedding``: ``x = H(E[token])`` (Heaviside forward, arctan
      surrogate backward with alpha = 2). None (default): True with a
      spiking neuron, False with ``neuron="none"`` (the ANN twin keeps a real
      embedding).
    """

    model_type = "spikegpt"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    vocab_size: int = 50277
    hidden_size: int = 512
    num_hidden_layers: int = 12
    ffn_multiplier: int = 4
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    neuron: str = "lif"
    binary_embedding: bool | None = None
    lif_tau: float = 2.0
    lif_threshold: float = 1.0
    eiif_threshold: float = 1.0
    eiif_attenuation: float = 0.5
    tie_word_embeddings: bool = False
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 0
    eos_token_id: int | None = 0

    def __post_init__(self, **kwargs) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "ffn_multiplier"):
            _checks.check_timesteps(name, getattr(self, name))  # a positive int, the error naming the field
        _checks.check_choice("neuron", self.neuron, NEURONS)
        if self.binary_embedding is None:
            self.binary_embedding = self.neuron != "none"
        for name in ("binary_embedding", "tie_word_embeddings", "use_cache"):
            _checks.check_bool(name, getattr(self, name))
        for name in ("layer_norm_eps", "initializer_range", "lif_tau", "lif_threshold", "eiif_threshold"):
            _checks.check_number(name, getattr(self, name))
            _checks.check_positive(name, getattr(self, name))
        if float(self.lif_tau) <= 1.0:
            raise ValueError(f"lif_tau must be > 1 (the LIF decays by 1/tau per token), got {self.lif_tau}")
        _checks.check_number("eiif_attenuation", self.eiif_attenuation)
        _checks.check_unit_interval("eiif_attenuation", self.eiif_attenuation)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None:
                _checks.check_int(name, value, 0, self.vocab_size - 1)
        super().__post_init__(**kwargs)

    @property
    def intermediate_size(self) -> int:
        """The SRFFN's hidden width, ``ffn_multiplier * hidden_size``."""
        return self.ffn_multiplier * self.hidden_size
