r"""Train a SpikeGPT language model on text with transformers' `Trainer`.

`train` tokenizes the texts (character level by default, see
`char_tokenizer`), cuts them into blocks of ``context`` tokens
(`TokenBlocks`) and runs a `transformers.Trainer` with the paper's optimiser:
Adam (0.9, 0.99) without weight decay, a linear warm-up to ``learning_rate``
(6e-4) and a cosine decay to ``min_learning_rate`` (1e-5), gradient clipping
at 1. Everything else is the Trainer's: progress bars, checkpoints every
``save_steps`` into ``out/checkpoints/checkpoint-N`` (each with the optimiser,
the scheduler and the random state, so ``resume=True`` continues a run
exactly where its last checkpoint left it), and distributed training: run the
same command under ``torchrun --nproc_per_node N`` or ``accelerate launch``
and the Trainer splits the batches across processes, GPUs and machines.

At the end the model (safetensors) and its tokenizer are written to ``out``
as a whole (`bt_neurons._atomic_writes.atomic_write_files`), so a folder that
has a ``config.json`` always holds a complete model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bt_neurons import _checks

from .._saving import save_model_and_tokenizer
from .configuration import SpikeGPTConfig
from .modeling import SpikeGPTForCausalLM
from .tokenization import char_tokenizer

__all__ = ["TokenBlocks", "TrainResult", "encode_texts", "train"]


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> Tensor:
    """The token ids ``[L]`` of ``texts`` joined by blank lines (no special tokens)."""
    ids: list[int] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a string, got {type(text).__name__}")
        ids += tokenizer("\n\n" + text if i else text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids, dtype=torch.long)


class TokenBlocks(torch.utils.data.Dataset):
    """Consecutive, non-overlapping blocks of ``context`` tokens of a token sequence, as Trainer examples.

    Item ``i`` is ``{"input_ids": ids[i*context : (i+1)*context], "labels": the same}``
    (the model shifts the labels itself); the tail shorter than a block is dropped.
    """

    def __init__(self, ids: Tensor, context: int) -> None:
        _checks.check_int("context", context, 2)
        if ids.dim() != 1:
            raise ValueError(f"ids must be one token sequence [L], got shape {tuple(ids.shape)}")
        count = ids.numel() // context
        if count == 0:
            raise ValueError(
                f"the text has {ids.numel()} tokens, fewer than one block of context = {context}"
            )
        self.blocks = ids[: count * context].view(count, context)

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        block = self.blocks[i]
        return {"input_ids": block, "labels": block}


@dataclass
class TrainResult:
    """What `train` produced and measured.

    Attributes:
        model: the trained model (in eval mode, on the CPU or the device it trained on).
        tokenizer: its tokenizer (saved beside it in ``out``).
        out: the folder the model was written to.
        steps: optimiser steps taken (this run and the resumed ones).
        train_tokens_per_second: tokens per second of this run's training (forward, backward, update).
        train_loss: the Trainer's mean training loss (nats per token).
        eval_bits_per_token: held-out cross-entropy in bits per token (BPC at character level), or None.
        log: the Trainer's log history (losses, learning rates, evaluations).
    """

    model: Any  #: a SpikeGPTForCausalLM, or the model given to `train`
    tokenizer: Any
    out: Path
    steps: int
    train_tokens_per_second: float
    train_loss: float
    eval_bits_per_token: float | None
    log: list[dict[str, Any]] = field(default_factory=list)


def train(
    train_texts: Sequence[str],
    out: str | Path,
    *,
    config: SpikeGPTConfig | None = None,
    model: Any = None,
    tokenizer: Any = None,
    eval_texts: Sequence[str] | None = None,
    context: int = 128,
    batch_size: int = 8,
    max_steps: int = 1000,
    learning_rate: float = 6e-4,
    min_learning_rate: float = 1e-5,
    warmup_steps: int = 50,
    save_steps: int = 500,
    eval_steps: int | None = None,
    logging_steps: int = 50,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] | None = None,
    **training_arguments: Any,
) -> TrainResult:
    """Train a SpikeGPT model on ``train_texts`` and write it with its tokenizer to ``out``.

    Args:
        train_texts: the training texts (joined by blank lines).
        out: the output folder (created; checkpoints go to ``out/checkpoints``).
        config: the architecture (default: ``SpikeGPTConfig()`` of 12 x 512 is
            large; pass one). Its ``vocab_size`` is set to the tokenizer's.
        model: train this transformers causal LM instead of a new SpikeGPT
            (e.g. a GPT-2 of the same size, for a comparison under exactly the
            same schedule); ``config`` is then ignored, and its vocabulary must
            hold the tokenizer's.
        tokenizer: any transformers tokenizer; default `char_tokenizer` of ``train_texts``.
        eval_texts: held-out texts, scored every ``eval_steps`` and at the end.
        context: tokens per training block (the time steps the neurons run through).
        batch_size: blocks per optimiser step and process.
        max_steps: optimiser steps in all (a resumed run continues to this number).
        learning_rate: peak learning rate after ``warmup_steps``.
        min_learning_rate: the end of the cosine decay.
        warmup_steps: linear warm-up steps.
        save_steps: a checkpoint every this many steps (the last two kept).
        eval_steps: evaluate every this many steps (default: at the end only).
        logging_steps: log the loss every this many steps.
        seed: the seed of the initialisation, the shuffling and the neurons.
        resume: continue from the last checkpoint in ``out/checkpoints``.
        progress: show the Trainer's progress bar.
        callbacks: `transformers.TrainerCallback` objects for the Trainer (e.g. early stopping).
        training_arguments: passed on to `transformers.TrainingArguments` (e.g.
            ``bf16=True``, ``gradient_accumulation_steps``), overriding the above.

    Raises:
        ValueError: a bad number, a text shorter than one block, or ``resume``
            without a checkpoint.
    """
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    if isinstance(train_texts, str):
        raise TypeError("train_texts must be a sequence of strings (a list), not one string")
    if not train_texts:
        raise ValueError("train_texts is empty: give at least one text")
    for name, value, low in (
        ("batch_size", batch_size, 1),
        ("max_steps", max_steps, 1),
        ("warmup_steps", warmup_steps, 0),
        ("save_steps", save_steps, 1),
        ("logging_steps", logging_steps, 1),
    ):
        _checks.check_int(name, value, low)
    if eval_steps is not None:
        _checks.check_int("eval_steps", eval_steps, 1)
    for name, value in (("learning_rate", learning_rate), ("min_learning_rate", min_learning_rate)):
        _checks.check_number(name, value)
        _checks.check_positive(name, value)
    if min_learning_rate > learning_rate:
        raise ValueError(
            f"min_learning_rate ({min_learning_rate}) must not exceed learning_rate ({learning_rate})"
        )
    out = Path(out)
    checkpoints = out / "checkpoints"
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume and last is None:
        raise ValueError(f"resume=True but {str(checkpoints)!r} holds no checkpoint to resume from")

    set_seed(seed)
    tokenizer = char_tokenizer(train_texts) if tokenizer is None else tokenizer
    train_data = TokenBlocks(encode_texts(tokenizer, train_texts), context)
    eval_data = None
    if eval_texts:
        eval_data = TokenBlocks(encode_texts(tokenizer, eval_texts), context)
    if model is None:
        config = SpikeGPTConfig(**(config.to_dict() if config is not None else {}))
        config.vocab_size = len(tokenizer)
        config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
        model = SpikeGPTForCausalLM(config)
    elif model.config.vocab_size < len(tokenizer):
        raise ValueError(
            f"model has a vocabulary of {model.config.vocab_size}, "
            f"smaller than the tokenizer's {len(tokenizer)}"
        )
    model.config.use_cache = False  # training reads whole blocks; no state is kept between them

    out.mkdir(parents=True, exist_ok=True)
    arguments: dict[str, Any] = {
        "output_dir": str(checkpoints),
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "learning_rate": learning_rate,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr": min_learning_rate},
        "warmup_steps": warmup_steps,
        "weight_decay": 0.0,
        "adam_beta1": 0.9,
        "adam_beta2": 0.99,
        "max_grad_norm": 1.0,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": 2,
        "eval_strategy": "steps" if eval_data is not None and eval_steps else "no",
        "eval_steps": eval_steps,
        "logging_steps": logging_steps,
        "seed": seed,
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_drop_last": True,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    arguments.update(training_arguments)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**arguments),
        train_dataset=train_data,
        eval_dataset=eval_data,
        callbacks=list(callbacks) if callbacks else None,
    )
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last if resume else None)
    seconds = time.perf_counter() - start
    first_step = int(Path(last).name.rsplit("-", 1)[-1]) if resume and last else 0
    steps_run = trainer.state.global_step - first_step
    world = trainer.args.world_size
    tokens = steps_run * batch_size * context * world * trainer.args.gradient_accumulation_steps

    eval_bits = None
    if eval_data is not None:
        metrics = trainer.evaluate()
        eval_bits = metrics["eval_loss"] / math.log(2)
    model = trainer.model
    model.config.use_cache = True
    model.eval()
    if trainer.is_world_process_zero():
        save_model_and_tokenizer(model, tokenizer, out)
    return TrainResult(
        model=model,
        tokenizer=tokenizer,
        out=out,
        steps=trainer.state.global_step,
        train_tokens_per_second=tokens / seconds if seconds > 0 else float("nan"),
        train_loss=float(result.training_loss),
        eval_bits_per_token=eval_bits,
        log=list(trainer.state.log_history),
    )
