"""``bt-spikegpt``: train a SpikeGPT language model on text files, and sample from it.

``bt-spikegpt train TEXT... --out DIR`` trains a character-level model (or one
with ``--tokenizer FOLDER``) with transformers' Trainer (`training.train`):
progress bars on stderr, checkpoints in ``DIR/checkpoints`` (``--resume``
continues the last one), the model and its tokenizer written to ``DIR`` at the
end. Under ``torchrun --nproc_per_node N`` or ``accelerate launch`` the same
command trains on N processes (``python -m bt_neurons.models.spikegpt.cli
train ...``). ``bt-spikegpt sample DIR -p "ROMEO:"`` prints the prompt and
the continuation as it is generated.

Errors end with one line ``bt-spikegpt: error: ...``: exit status 2 for a
usage error (a bad option, a missing or broken file), 1 for a failed run,
130 for Ctrl-C (see `bt_neurons._commands`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bt_neurons._commands import CommandError, HelpFormatter, one_line, run_command

from .._cli import _positive, _positive_real, _read_text, _sampling_arguments, _seed

__all__ = ["main", "parser"]

_NEURONS = ("lif", "eiif", "none")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bt-spikegpt",
        description="Train a SpikeGPT spiking language model on text, and sample from it.",
        formatter_class=HelpFormatter,
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="{train,sample}")

    t = commands.add_parser(
        "train",
        help="train a model on text files",
        description="Train a SpikeGPT model on UTF-8 text files with transformers' Trainer.",
        formatter_class=HelpFormatter,
    )
    t.add_argument("texts", nargs="+", metavar="TEXT", help="UTF-8 text files to train on")
    t.add_argument("--out", required=True, help="folder for the model, its tokenizer and the checkpoints")
    t.add_argument(
        "--eval-text",
        action="append",
        default=[],
        metavar="FILE",
        help="held-out UTF-8 text, scored in bits per token (repeatable; default: none)",
    )
    t.add_argument("--tokenizer", help="a tokenizer folder (default: one token per character of the texts)")
    t.add_argument(
        "--neuron",
        choices=_NEURONS,
        default="lif",
        help="lif: SpikingJelly's LIF (the paper); eiif: bt's signed EI_IF; none: the ANN twin",
    )
    t.add_argument("--layers", type=_positive, default=6, help="blocks")
    t.add_argument("--hidden", type=_positive, default=256, help="model width d")
    t.add_argument("--context", type=_positive, default=128, help="tokens per training block")
    t.add_argument("--batch-size", type=_positive, default=8, help="blocks per step (per process)")
    t.add_argument("--max-steps", type=_positive, default=1000, help="optimiser steps in all")
    t.add_argument("--lr", type=_positive_real, default=6e-4, help="peak learning rate")
    t.add_argument(
        "--min-lr", type=_positive_real, default=1e-5, help="learning rate at the end of the cosine"
    )
    t.add_argument("--warmup-steps", type=int, default=50, help="linear warm-up steps")
    t.add_argument("--save-steps", type=_positive, default=500, help="a checkpoint every this many steps")
    t.add_argument(
        "--eval-steps",
        type=_positive,
        help="score the --eval-text every this many steps (default: at the end only)",
    )
    t.add_argument("--seed", type=_seed, default=0, help="seed of the initialisation and the shuffling")
    t.add_argument("--bf16", action="store_true", help="train in bfloat16 mixed precision")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("--force", action="store_true", help="train anew into an --out that holds a model")

    s = commands.add_parser(
        "sample",
        help="generate text from a trained model",
        description="Print the prompt and the model's continuation as it is generated.",
        formatter_class=HelpFormatter,
    )
    s.add_argument("model", help="folder written by bt-spikegpt train")
    s.add_argument("--prompt", "-p", default="\n", help="text to continue (default: a new line)")
    s.add_argument("--max-new-tokens", type=_positive, default=200, help="tokens to generate")
    _sampling_arguments(s, temperature=0.8, top_p=0.95)
    return p


def _check_out(out: Path, resume: bool, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {str(out)!r} is a file, not a folder")
    holds_model = (out / "config.json").is_file()
    holds_checkpoints = (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir())
    if resume and force:
        raise CommandError("--resume and --force contradict each other: give one")
    if resume and not holds_checkpoints:
        raise CommandError(f"--resume: {str(out)!r} holds no checkpoint (no {str(out / 'checkpoints')!r})")
    if (holds_model or holds_checkpoints) and not (resume or force):
        raise CommandError(
            f"--out {str(out)!r} already holds a model or checkpoints "
            "(--resume to continue it, --force to train anew)"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not out.exists() and not parent.is_dir():
        raise CommandError(f"the parent folder of --out {str(out)!r} does not exist")


def _load_tokenizer(folder: str):
    from transformers import AutoTokenizer

    if not Path(folder).is_dir():
        raise CommandError(f"--tokenizer {folder!r} is not a folder")
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # broken tokenizer files surface as many kinds of error
        raise CommandError(f"cannot load --tokenizer {folder!r}: {one_line(exc)}") from None


def _train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out(out, args.resume, args.force)
    if args.warmup_steps < 0:
        raise CommandError(f"--warmup-steps must be >= 0, got {args.warmup_steps}")
    if args.min_lr > args.lr:
        raise CommandError(f"--min-lr ({args.min_lr}) must not exceed --lr ({args.lr})")
    texts = [_read_text("TEXT", path) for path in args.texts]
    eval_texts = [_read_text("--eval-text", path) for path in args.eval_text]
    tokenizer = _load_tokenizer(args.tokenizer) if args.tokenizer else None
    from .configuration import SpikeGPTConfig
    from .training import train

    if args.force and out.is_dir():
        import shutil

        for name in ("checkpoints",):
            shutil.rmtree(out / name, ignore_errors=True)
        (out / "config.json").unlink(missing_ok=True)  # the folder no longer reads as a model until the end
    config = SpikeGPTConfig(hidden_size=args.hidden, num_hidden_layers=args.layers, neuron=args.neuron)
    result = train(
        texts,
        out,
        config=config,
        tokenizer=tokenizer,
        eval_texts=eval_texts or None,
        context=args.context,
        batch_size=args.batch_size,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        min_learning_rate=args.min_lr,
        warmup_steps=args.warmup_steps,
        save_steps=args.save_steps,
        eval_steps=args.eval_steps,
        seed=args.seed,
        resume=args.resume,
        bf16=args.bf16,
    )
    figures = f"{result.steps} steps, {result.train_tokens_per_second:.0f} training tokens/s"
    if result.eval_bits_per_token is not None:
        figures += f", held-out {result.eval_bits_per_token:.3f} bits per token"
    print(f"wrote {out} ({figures})", file=sys.stderr)
    return 0


def _sample(args: argparse.Namespace) -> int:
    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise CommandError(f"{str(folder)!r} is not a model folder (no config.json)")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        raise CommandError(f"{str(folder)!r} has no tokenizer (tokenizer.json)")
    if not args.prompt:
        raise CommandError("--prompt is empty: give a text to continue")
    import torch
    from transformers import AutoTokenizer, TextStreamer

    from .modeling import SpikeGPTForCausalLM

    try:
        model = SpikeGPTForCausalLM.from_pretrained(folder, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot load {str(folder)!r}: {one_line(exc)}") from None
    ids = tokenizer(args.prompt, add_special_tokens=False, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise CommandError("the prompt has no tokens")
    kwargs = {"max_new_tokens": args.max_new_tokens, "pad_token_id": tokenizer.eos_token_id}
    if tokenizer.unk_token_id is not None:  # never print an unknown character
        kwargs["suppress_tokens"] = [tokenizer.unk_token_id]
    if args.sample:
        torch.manual_seed(args.seed)
        kwargs.update(do_sample=True, temperature=args.temperature, top_p=args.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    print(args.prompt, end="", flush=True)
    streamer = TextStreamer(tokenizer, skip_prompt=True)
    with torch.no_grad():
        model.generate(
            ids, attention_mask=torch.ones_like(ids), streamer=streamer, eos_token_id=None, **kwargs
        )
    return 0


def _run(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    return _train(args) if args.command == "train" else _sample(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bt-spikegpt``; returns the exit status (0, 1, 2 or 130; see the module docs)."""
    return run_command(
        "bt-spikegpt", lambda: _run(argv), usage_errors=(ValueError, TypeError, FileNotFoundError)
    )


if __name__ == "__main__":
    sys.exit(main())
