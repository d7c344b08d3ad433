"""`BTSpikingConfig`: the configuration of the spiking causal language model.

The architecture fields are those of Llama / Qwen2 (their names and meanings
are transformers'); the spiking fields choose the time steps, the execution
path and, per operator, spiking or explicit float mode.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig  # noqa: E402

from bt_neurons import _checks

from .. import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)

__all__ = ["BTSpikingConfig", "OPERATORS", "operator_modes"]

#: The operators a spiking model is built from, each ``"spiking"`` or ``"float"``.
OPERATORS = ("linear", "matmul", "multiply", "softmax", "rmsnorm", "silu")

_PRESETS = {
    # every operator spiking
    "spiking": dict.fromkeys(OPERATORS, "spiking"),
    # spiking linear layers and attention products; float softmax, RMSNorm and SiLU
    "hybrid": {
        "linear": "spiking",
        "matmul": "spiking",
        "multiply": "spiking",
        "softmax": "float",
        "rmsnorm": "float",
        "silu": "float",
    },
    # spiking attention products and gate product only; linear layers, softmax, RMSNorm and SiLU in
    # float (the encoding points of SpikingJelly's Qwen2 recipe, for like-for-like comparisons)
    "products": {
        "linear": "float",
        "matmul": "spiking",
        "multiply": "spiking",
        "softmax": "float",
        "rmsnorm": "float",
        "silu": "float",
    },
    # nothing spiking: the ANN twin (with the converted weights)
    "float": dict.fromkeys(OPERATORS, "float"),
}


def operator_modes(operators: str | dict | None) -> dict[str, str]:
    """Expand ``operators`` (a preset name or a partial dict) to a full dict.

    Presets: ``"spiking"`` (everything spiking), ``"hybrid"`` (default: spiking
    linear layers, attention products and gate product; float softmax, RMSNorm
    and SiLU), ``"products"`` (only the attention products and the gate
    product spiking: the points SpikingJelly's Qwen2 recipe encodes) and
    ``"float"``. A dict overrides the ``"hybrid"`` preset, e.g.
    ``{"softmax": "spiking"}``.
    """
    if operators is None:
        return dict(_PRESETS["hybrid"])
    if isinstance(operators, str):
        if operators not in _PRESETS:
            raise ValueError(f"operators must be one of {sorted(_PRESETS)} or a dict, got {operators!r}")
        return dict(_PRESETS[operators])
    if not isinstance(operators, dict):
        raise TypeError(f"operators must be a preset name or a dict, got {type(operators).__name__}")
    unknown = sorted(set(operators) - set(OPERATORS))
    if unknown:
        raise ValueError(f"operators has unknown keys {unknown}; the operators are {list(OPERATORS)}")
    modes = dict(_PRESETS["hybrid"])
    for key, mode in operators.items():
        if mode not in ("spiking", "float"):
            raise ValueError(f"operators[{key!r}] must be 'spiking' or 'float', got {mode!r}")
        modes[key] = mode
    return modes


#: Fields checked by type and range before anything is computed from them (a config.json may hold anything).
_POSITIVE_INTS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
    "timesteps",
)
_OPTIONAL_POSITIVE_INTS = ("num_key_value_heads", "head_dim")
_NONNEGATIVE_INTS = ("hadamard_mlp_block", "encoder_group_size")
_BOOLS = ("tie_word_embeddings", "qkv_bias", "o_bias", "mlp_bias", "use_cache", "rotated", "final_mixer")
_OPTIONAL_STRS = ("source_model_type",)


def _check_fields(cfg) -> None:
    """Types and ranges of the fields, each error naming its field (``TypeError`` / ``ValueError``)."""
    for name in _POSITIVE_INTS:
        _checks.check_timesteps(name, getattr(cfg, name))  # a positive int
    for name in _OPTIONAL_POSITIVE_INTS:
        if getattr(cfg, name) is not None:
            _checks.check_timesteps(name, getattr(cfg, name))
    for name in _NONNEGATIVE_INTS:
        _checks.check_int(name, getattr(cfg, name), 0)
    for name in _BOOLS:
        _checks.check_bool(name, getattr(cfg, name))
    _checks.check_positive("rms_norm_eps", cfg.rms_norm_eps)
    for name in ("hidden_act", "path", *_OPTIONAL_STRS):
        value = getattr(cfg, name)
        if not isinstance(value, str) and not (name in _OPTIONAL_STRS and value is None):
            raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    if cfg.rope_parameters is not None and not isinstance(cfg.rope_parameters, dict):
        raise TypeError(f"rope_parameters must be a dict or None, got {type(cfg.rope_parameters).__name__}")
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(cfg, name)
        ids = value if isinstance(value, list) and name == "eos_token_id" else [value]
        for v in ids:
            if v is not None:
                _checks.check_int(name, v, -cfg.vocab_size, cfg.vocab_size - 1)


@strict
class BTSpikingConfig(PreTrainedConfig):
    r"""Configuration of `BTSpikingForCausalLM`.

    Architecture (as in transformers' ``LlamaConfig``): ``vocab_size``,
    ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``num_key_value_heads`` (grouped-query attention),
    ``head_dim``, ``max_position_embeddings``, ``rms_norm_eps``,
    ``rope_parameters`` (any rope type transformers knows: default, linear,
    dynamic, yarn, llama3, ...), ``tie_word_embeddings``. Biases: ``qkv_bias``
    (Qwen2: True), ``o_bias`` and ``mlp_bias`` (Llama's ``attention_bias`` sets
    both ``qkv_bias`` and ``o_bias``).

    Spiking:

    - ``timesteps``: ``T``, the steps of every EI_IF encoder (counts in
      ``[-T, T]``). Default 15.
    - ``path``: ``"count"`` (default, closed-form spike counts) or ``"spike"``
      (step-by-step spike trains); they give the same logits.
    - ``operators``: ``{"linear", "matmul", "multiply", "softmax", "rmsnorm",
      "silu"} -> "spiking" | "float"``, or a preset name (see
      `operator_modes`). Default ``"hybrid"``.
    - ``rotated``: the weights carry the orthogonal rotations that `convert`
      folds in; the model then applies the matching Walsh-Hadamard transforms
      to queries and keys (per head) and to the MLP's down-projection input.
    - ``hadamard_mlp_block``: block size of the MLP's online Hadamard transform
      (a power of two dividing ``intermediate_size``; 0: none).
    - ``final_mixer``: the model has a ``hidden x hidden`` linear layer before
      a tied ``lm_head`` (one way for a rotation to meet tied embeddings; `convert`
      unties the head instead unless asked for the mixer).
    - ``final_mixer_mode``: ``"spiking"`` (default): the mixer is a Synapsis with
      EI_IF encoders of its own, then ``lm_head`` encodes its output again;
      ``"float"``: the mixer is a float ``hidden x hidden`` product (charged as
      multiply-accumulates) and ``lm_head`` alone encodes, once;
      ``"factored"``: the mixer's encoders are the head's, and ``lm_head``
      reads the mixer's currents: the head's weight $W = E' M$ kept as two
      factors (the synapses and spikes of an untied head, the ANN's memory).
    - ``encoder_group_size``: ``G``: the linear layers' EI_IF encoders use one
      scale per token and per group of ``G`` consecutive input channels
      (`Quantizer`'s ``group_size``); 0 (default): one scale per token. ``G``
      must divide ``hidden_size``, ``intermediate_size`` and
      ``num_attention_heads * head_dim``.
    - ``source_model_type``: what the model was converted from (``"llama"``, ``"qwen2"``).
    """

    model_type = "bt_spiking"
    keys_to_ignore_at_inference = ["past_key_values"]

    vocab_size: int = 32000
    hidden_size: int = 576
    intermediate_size: int = 1536
    num_hidden_layers: int = 2
    num_attention_heads: int = 9
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-5
    rope_parameters: dict | None = None
    tie_word_embeddings: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    timesteps: int = 15
    path: str = "count"
    operators: dict | str | None = None
    rotated: bool = False
    hadamard_mlp_block: int = 0
    final_mixer: bool = False
    final_mixer_mode: str = "spiking"
    encoder_group_size: int = 0
    source_model_type: str | None = None

    def __post_init__(self, **kwargs) -> None:
        _check_fields(self)
        if self.head_dim is None:
            if self.hidden_size < self.num_attention_heads:
                raise ValueError(
                    f"hidden_size ({self.hidden_size}) must be >= num_attention_heads "
                    f"({self.num_attention_heads}) when head_dim is not given"
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        self.operators = operator_modes(self.operators)
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Checks that run when the config is built or loaded."""
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int) or self.timesteps < 1:
            raise ValueError(f"timesteps must be a positive int, got {self.timesteps!r}")
        if self.path not in ("count", "spike"):
            raise ValueError(f"path must be 'count' or 'spike', got {self.path!r}")
        if self.final_mixer_mode not in ("spiking", "float", "factored"):
            raise ValueError(
                f"final_mixer_mode must be 'spiking', 'float' or 'factored', got {self.final_mixer_mode!r}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.hidden_act != "silu":
            raise ValueError(
                f"hidden_act must be 'silu' (the spiking SiLU approximator), got {self.hidden_act!r}"
            )
        G = self.encoder_group_size
        if isinstance(G, bool) or not isinstance(G, int) or G < 0:
            raise ValueError(f"encoder_group_size must be an int >= 0, got {G!r}")
        widths = (self.hidden_size, self.intermediate_size, self.num_attention_heads * self.head_dim)
        if G and any(w % G for w in widths):
            raise ValueError(
                f"encoder_group_size ({G}) must divide hidden_size, intermediate_size and "
                f"num_attention_heads * head_dim ({', '.join(map(str, widths))})"
            )
        b = self.hadamard_mlp_block
        if b and (b & (b - 1) or self.intermediate_size % b):
            raise ValueError(
                f"hadamard_mlp_block must be 0 or a power of two dividing intermediate_size, got {b}"
            )
