r"""Stage 1 for a converted LLM: quantization-aware distillation to its float twin.

Post-training conversion at small ``T`` loses accuracy (the quantization of
every layer's input). Stage 1 (paper section 3.3) trains the quantized twin
instead: `prepare_qat` turns the spiking model's Synapses back into their
QSynapsis twins, the weights learn with the straight-through estimator, and
`to_spiking` converts back exactly. Here the target is the float model the
spiking one was converted from (the teacher), so nothing about the text is
learned beyond the teacher's own next-token distributions:

$$
\mathcal{L} = \frac{1}{B L} \sum_{b, l} \mathrm{KL}\bigl(p_{teacher}(\cdot \mid x_{b,<l})
\,\|\, p_{student}(\cdot \mid x_{b,<l})\bigr),
$$

over batches of ``B`` random windows of ``L`` tokens of the training text,
with AdamW, cosine learning-rate decay and gradient clipping. With
``learn_clip``, the clip ratio of every linear layer's encoder is trained
too, with the learned-step-size gradient (LSQ; see `Quantizer.forward`), kept
in ``[0.05, 1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from bt_neurons import QSynapsis, _checks

from .qat import prepare_qat
from .spiking_conversion import to_spiking

__all__ = ["distill"]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def distill(
    model: nn.Module,
    teacher: nn.Module,
    token_ids: Tensor,
    *,
    steps: int = 200,
    lr: float = 3e-5,
    batch: int = 2,
    seq: int = 256,
    seed: int = 0,
    max_grad_norm: float = 1.0,
    learn_clip: bool = False,
    clip_lr: float = 1e-3,
    progress: bool = False,
) -> list[float]:
    """Distil ``teacher`` into the spiking causal LM ``model`` through its quantized twin, in place.

    Args:
        model: a spiking `BTSpikingForCausalLM` (from `convert`); its ``T`` is
            ``model.config.timesteps``. It is trained in place and converted
            back to spiking modules, in eval mode, at the end.
        teacher: the float causal LM (same tokenizer), e.g. the one ``model``
            was converted from. It is not changed.
        token_ids: ``[N]`` token ids of the training text, ``N > seq``.
        steps: optimizer steps (default 200).
        lr: peak AdamW learning rate (default 3e-5), decayed to 0 on a cosine.
        batch: windows per step (default 2).
        seq: tokens per window (default 256).
        seed: seed of the window sampler.
        max_grad_norm: gradient clipping (default 1.0) of the weights.
        learn_clip: also train the clip ratios of the linear layers' encoders
            (default False: they keep their calibrated values).
        clip_lr: peak learning rate of the clip ratios (default 1e-3).
        progress: show a progress bar.

    Returns:
        The loss (KL per token, nats) of every step.

    Raises:
        ValueError: bad arguments (each names itself), or a loss that stops being finite.
    """
    steps, batch, seq = (
        _check_positive_int(n, v) for n, v in (("steps", steps), ("batch", batch), ("seq", seq))
    )
    for name, value in (("lr", lr), ("clip_lr", clip_lr)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if not isinstance(token_ids, Tensor) or token_ids.dim() != 1 or token_ids.is_floating_point():
        raise ValueError("token_ids must be a 1-D tensor of token ids")
    if token_ids.numel() <= seq:
        raise ValueError(
            f"token_ids has {token_ids.numel()} tokens; distillation windows need more than seq={seq}"
        )
    _checks.check_positive("max_grad_norm", max_grad_norm)
    _checks.check_int("seed", seed, -(2**63), 2**64 - 1)
    learn_clip = _checks.check_bool("learn_clip", learn_clip)
    timesteps = getattr(getattr(model, "config", None), "timesteps", None)
    if timesteps is None:
        raise TypeError(f"model must be a bt-neurons spiking causal LM, got {type(model).__name__}")
    if not isinstance(teacher, nn.Module):
        raise TypeError(f"teacher must be a causal LM (an nn.Module), got {type(teacher).__name__}")
    vocab = model.config.vocab_size
    teacher_vocab = getattr(getattr(teacher, "config", None), "vocab_size", vocab)
    if teacher_vocab != vocab:
        raise ValueError(
            f"teacher and model must share a vocabulary: the teacher has {teacher_vocab} tokens, "
            f"the model {vocab}"
        )
    lo, hi = int(token_ids.min()), int(token_ids.max())
    if lo < 0 or hi >= vocab:
        raise ValueError(f"token_ids must lie in [0, {vocab}) (the vocabulary), got {lo if lo < 0 else hi}")
    limit = getattr(model.config, "max_position_embeddings", seq)
    if seq > limit:
        raise ValueError(f"seq ({seq}) must be <= the model's max_position_embeddings ({limit})")
    prepare_qat(model, timesteps=timesteps)
    model.train()
    teacher.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    clips = []
    if learn_clip:
        quantizers = {
            id(m.pre): m.pre for m in model.modules() if isinstance(m, QSynapsis) and m.pre is not None
        }
        clips = [q.clip_ratio.requires_grad_(True) for q in quantizers.values() if q.dynamic and q.symmetric]
    groups = [{"params": params, "lr": lr}] + ([{"params": clips, "lr": clip_lr}] if clips else [])
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    try:
        bar = tqdm(range(steps), desc="stage 1 (distillation)", disable=not progress)
        for step in bar:
            starts = torch.randint(0, token_ids.numel() - seq, (batch,), generator=generator).tolist()
            ids = torch.stack([token_ids[s : s + seq] for s in starts])
            with torch.no_grad():
                target = F.log_softmax(teacher(input_ids=ids).logits.float(), -1)
            student = F.log_softmax(model(input_ids=ids, use_cache=False).logits.float(), -1)
            loss = F.kl_div(student, target, log_target=True, reduction="batchmean") / seq
            if not torch.isfinite(loss):
                raise ValueError(
                    f"the distillation loss became {float(loss)} at step {step}; try a smaller lr"
                )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            with torch.no_grad():
                for c in clips:
                    c.clamp_(0.05, 1.0)
            schedule.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(kl=f"{losses[-1]:.4f}")
    finally:
        for c in clips:
            c.requires_grad_(False)
            c.grad = None
        model.eval()
        to_spiking(model, path=getattr(model.config, "path", "count"), timesteps=timesteps)
    return losses
