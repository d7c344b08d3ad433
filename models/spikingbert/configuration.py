"""`SpikingBertConfig`: the configuration of the SpikingBERT spiking encoder."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig  # noqa: E402

from bt_neurons import _checks

from .. import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)

__all__ = ["GRADIENTS", "IMPLICIT_SOLVERS", "SpikingBertConfig"]

#: How a SpikingBERT model is differentiated in training.
GRADIENTS = ("implicit", "bptt")

#: How the implicit gradient's linear system is solved (`SpikingBertConfig.implicit_solver`).
IMPLICIT_SOLVERS = ("exact", "broyden", "anderson", "fixed_point_iter")


@strict
class SpikingBertConfig(PreTrainedConfig):
    r"""Configuration of `SpikingBertModel` / `SpikingBertForSequenceClassification` (``"spikingbert"``).

    Architecture: a BERT encoder (``vocab_size``, ``hidden_size`` ``d``,
    ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``,
    ``max_position_embeddings``, ``type_vocab_size``, ``layer_norm_eps``) whose
    activations are IF neurons (SpikingBERT, Bal and Sengupta 2024). The
    defaults are the shape of the all-MiniLM-L6-v2 teacher's layers (384 wide,
    12 heads, 1,536 hidden) with 4 of its 6 layers, the paper's 4-layer student.

    Spiking:

    - ``spiking``: True (default) simulates IF neurons for ``time_steps`` steps
      and reads their average spiking rates (ASR); False is the ANN twin, the
      rate network itself (every neuron replaced by its equilibrium rate
      ``clamp(current / v_threshold, 0, 1)``), trained the ordinary way.
    - ``time_steps``: ``T``, steps simulated per forward (default 16).
    - ``v_threshold``: ``V_th`` of every IF neuron (soft reset, leak 1), default 1.
    - ``gradient``: ``"implicit"`` (default: simulate without a graph, then
      differentiate the rate map at the simulated rates, memory flat in ``T``)
      or ``"bptt"`` (through the ``T`` steps with the arctan surrogate of slope
      ``surrogate_alpha``, memory linear in ``T``).
    - ``implicit_solver``: how ``(I - J^T) g = dL/da`` is solved. ``"exact"``
      (default) back-propagates once through the rate map with every layer's
      Jacobian taken at the simulated rates: the map is feed-forward, so ``J``
      is nilpotent and this is the exact solution. ``"broyden"`` (the paper's),
      ``"anderson"`` and ``"fixed_point_iter"`` solve it iteratively with
      torchdeq's solvers, up to ``solver_max_iter`` iterations or a residual
      below ``solver_tol``; they store ``[batch, all rates]`` per iteration.
    - ``teacher_hidden_size``: when set, the model holds ``fit_dense``
      (``d -> teacher_hidden_size``), the learned map of the hidden-state
      distillation loss, saved and loaded with the model.
    - ``classifier_dropout``: dropout on the CLS rate before the classifier (0.1).
    """

    model_type = "spikingbert"

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    classifier_dropout: float = 0.1
    spiking: bool = True
    time_steps: int = 16
    v_threshold: float = 1.0
    gradient: str = "implicit"
    implicit_solver: str = "exact"
    solver_max_iter: int = 30
    solver_tol: float = 1e-6
    surrogate_alpha: float = 2.0
    teacher_hidden_size: int | None = None
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "time_steps",
            "solver_max_iter",
        ):
            _checks.check_timesteps(name, getattr(self, name))  # a positive int, the error naming the field
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})"
            )
        for name in ("layer_norm_eps", "initializer_range", "v_threshold", "solver_tol", "surrogate_alpha"):
            _checks.check_number(name, getattr(self, name))
            _checks.check_positive(name, getattr(self, name))
        _checks.check_number("classifier_dropout", self.classifier_dropout)
        _checks.check_unit_interval("classifier_dropout", self.classifier_dropout)
        _checks.check_bool("spiking", self.spiking)
        _checks.check_choice("gradient", self.gradient, GRADIENTS)
        _checks.check_choice("implicit_solver", self.implicit_solver, IMPLICIT_SOLVERS)
        if self.teacher_hidden_size is not None:
            _checks.check_timesteps("teacher_hidden_size", self.teacher_hidden_size)
        if self.pad_token_id is not None:
            _checks.check_int("pad_token_id", self.pad_token_id, 0, self.vocab_size - 1)
        super().__post_init__(**kwargs)

    @property
    def head_size(self) -> int:
        """``hidden_size / num_attention_heads``."""
        return self.hidden_size // self.num_attention_heads
