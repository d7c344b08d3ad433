"""``bt-convert`` and ``bt-chat``: convert a checkpoint and talk to the spiking model from the shell.

``bt-convert SRC DST --timesteps T`` converts a local Llama / Qwen2 checkpoint
(a folder, or a ``.gguf`` file) and writes the spiking model and its tokenizer to
``DST`` (a folder written whole or not at all), with progress bars on stderr;
``--distill-file F`` adds stage 1 (quantization-aware distillation to the
source model on the text of F). ``bt-chat DST`` generates from it, printing
each answer as it is generated: once with ``--prompt``, or a conversation read
line by line from stdin.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["chat_main", "convert_main"]


class _UsageError(Exception):
    pass


def _at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``, described as ``what`` in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive = _at_least(1, "a positive integer")
_nonnegative = _at_least(0, "an integer >= 0")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to every option's help, unless the help already states its default.

    Flags (``store_true``) are off unless given and get no note; an option
    whose default is None says in its own help what happens without it.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.nargs == 0
            or any(action.default is v for v in (None, argparse.SUPPRESS))
        ):
            return text
        return super()._get_help_string(action)


def _spiking_arguments(parser: argparse.ArgumentParser, defaults: bool) -> None:
    parser.add_argument(
        "--path",
        choices=("count", "spike"),
        default="count" if defaults else None,
        help="execution path" + ("" if defaults else " (default: the model's)"),
    )
    parser.add_argument(
        "--operators",
        choices=("hybrid", "spiking", "float"),
        default="hybrid" if defaults else None,
        help="hybrid: spiking linear layers and attention products, float softmax/RMSNorm/SiLU; "
        "spiking: every operator spiking; float: the ANN twin"
        + ("" if defaults else " (default: the model's)"),
    )


def convert_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bt-convert",
        description="Convert a local Llama / Qwen2 checkpoint into a bt-neurons spiking model.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("src", help="folder of the Hugging Face checkpoint, or a .gguf file")
    p.add_argument("dst", help="folder to write the spiking model to (must not exist unless --force)")
    p.add_argument("--timesteps", "-T", type=_positive, default=15, help="EI_IF time steps T")
    p.add_argument(
        "--gguf-file",
        help="the GGUF file inside SRC (default: none, SRC is a transformers checkpoint or a .gguf file)",
    )
    p.add_argument(
        "--calibration-file",
        help="a UTF-8 text file to calibrate the clip ratios on (default: none, clip ratio 1 everywhere)",
    )
    p.add_argument(
        "--calibration-tokens", type=_positive, default=256, help="tokens of the calibration text used"
    )
    p.add_argument("--no-rotate", action="store_true", help="do not fold rotations into the weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the residual rotation")
    p.add_argument(
        "--group-size",
        type=_nonnegative,
        help="input channels per encoder scale of the linear layers (default: the head dimension "
        "when it divides every layer's width, else 0; 0: one scale per token)",
    )
    p.add_argument(
        "--final-mixer",
        action="store_true",
        help="keep tied embeddings tied (a hidden x hidden layer before lm_head) instead of untying them",
    )
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument(
        "--distill-file",
        help="a UTF-8 text file to run stage 1 on after conversion: quantization-aware distillation "
        "to the source model, which recovers most of the accuracy lost at small T (default: none, no "
        "distillation)",
    )
    p.add_argument("--distill-steps", type=_positive, default=200, help="distillation steps")
    p.add_argument("--distill-lr", type=float, default=3e-5, help="peak learning rate of the distillation")
    p.add_argument("--distill-seq", type=_positive, default=256, help="tokens per distillation window")
    p.add_argument(
        "--distill-learn-clip",
        action="store_true",
        help="also train the encoders' clip ratios (learned step size, peak lr 1e-3)",
    )
    _spiking_arguments(p, defaults=True)
    return p


def _write_atomically(model, tokenizer, dst: Path, force: bool) -> None:
    """Save into a temporary folder beside ``dst``, then move it into place."""
    parent = dst.parent if str(dst.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=parent))
    try:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if dst.exists():
            if not force:
                raise _UsageError(f"dst {str(dst)!r} already exists (use --force to replace it)")
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=parent))
            os.replace(dst, old / "model")
            os.replace(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_text(option: str, path: str | None) -> str | None:
    """The UTF-8 text of the file an option names (None when the option is absent)."""
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read {option}: {exc}") from None


def convert_main(argv: list[str] | None = None) -> int:
    """Entry point of ``bt-convert``; returns the exit status (2 for a usage error)."""
    args = convert_parser().parse_args(argv)
    start = time.perf_counter()
    src, dst = Path(args.src), Path(args.dst)
    if src.suffix == ".gguf" and src.is_file() and args.gguf_file is None:
        src, args.gguf_file = src.parent, src.name
    try:
        if not src.exists():
            raise _UsageError(
                f"src {str(src)!r} does not exist: expected a checkpoint folder or a .gguf file"
            )
        if not src.is_dir():
            what = "a checkpoint folder" if args.gguf_file else "a checkpoint folder or a .gguf file"
            raise _UsageError(f"src {str(src)!r} is not {what}")
        if dst.exists() and not args.force:
            raise _UsageError(f"dst {str(dst)!r} already exists (use --force to replace it)")
        if not (dst.parent if str(dst.parent) else Path(".")).is_dir():
            raise _UsageError(f"the parent folder of dst {str(dst)!r} does not exist")
        text = _read_text("--calibration-file", args.calibration_file)
        distill_text = _read_text("--distill-file", args.distill_file)
        from .conversion import convert, load_source

        if args.gguf_file:  # transformers parses and de-quantizes it, silently at first
            print(f"loading {src / args.gguf_file} (reading a GGUF file takes a while) ...", file=sys.stderr)
        else:
            print(f"loading {src} ...", file=sys.stderr)
        loading = time.perf_counter()
        source, tokenizer = load_source(src, args.gguf_file)
        print(f"loaded in {time.perf_counter() - loading:.1f} s", file=sys.stderr)
        print(f"converting at T={args.timesteps} ...", file=sys.stderr)
        model = convert(
            source,
            args.timesteps,
            text,
            tokenizer=tokenizer,
            path=args.path,
            operators=args.operators,
            rotate=not args.no_rotate,
            seed=args.seed,
            calibration_tokens=args.calibration_tokens,
            group_size=args.group_size,
            final_mixer=args.final_mixer,
            progress=True,
        )
        if distill_text is not None:
            from .training import distill

            if tokenizer is None:
                raise _UsageError("--distill-file needs the source's tokenizer, and src has none")
            ids = tokenizer(distill_text, return_tensors="pt").input_ids[0]
            print(
                f"stage 1: distilling for {args.distill_steps} steps on {ids.numel()} tokens ...",
                file=sys.stderr,
            )
            losses = distill(
                model,
                source,
                ids,
                steps=args.distill_steps,
                lr=args.distill_lr,
                seq=args.distill_seq,
                learn_clip=args.distill_learn_clip,
                progress=True,
            )
            print(f"distillation KL per token: {losses[0]:.4f} -> {losses[-1]:.4f}", file=sys.stderr)
        print(f"writing {dst} ...", file=sys.stderr)
        _write_atomically(model, tokenizer, dst, args.force)
    except (_UsageError, FileNotFoundError, ValueError, TypeError) as exc:
        print(f"bt-convert: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bt-convert: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"wrote {dst} ({time.perf_counter() - start:.1f} s in all)", file=sys.stderr)
    return 0


def chat_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bt-chat",
        description="Generate text with a converted spiking model; the answer is printed as it is generated.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("model", help="folder written by bt-convert")
    p.add_argument(
        "--prompt",
        "-p",
        help="generate once for this prompt (default: a conversation, read line by line from stdin)",
    )
    p.add_argument("--max-new-tokens", type=_positive, default=64, help="at most this many tokens per answer")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature, with --sample")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass, with --sample")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampling, with --sample")
    p.add_argument(
        "--timesteps", "-T", type=_positive, help="override the model's T (default: the model's T)"
    )
    p.add_argument("--raw", action="store_true", help="do not apply the tokenizer's chat template")
    _spiking_arguments(p, defaults=False)
    return p


def _answer_streamer(tokenizer):
    """A `transformers.TextStreamer` that prints the answer as `_reply` returns it, plus a newline.

    It prints the new text of each step, without the prompt and the special
    tokens; leading whitespace is dropped and trailing whitespace held back
    until more text follows, so what it prints is the stripped answer.
    """
    from transformers import TextStreamer

    class AnswerStreamer(TextStreamer):
        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.started = False  # printed some text already
            self.held = ""  # whitespace printed only if more text follows

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            text = self.held + (text if self.started else text.lstrip())
            body = text.rstrip()
            self.held = text[len(body) :]
            if body:
                self.started = True
                print(body, end="", flush=True)
            if stream_end:
                print(flush=True)

    return AnswerStreamer()


def _reply(model, tokenizer, messages: list[dict], args, stream: bool = False) -> str:
    """The model's answer to the conversation ``messages``; ``stream``: also print it as it comes."""
    import torch

    if not args.raw and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = messages[-1]["content"]
    enc = tokenizer(text, return_tensors="pt")
    kwargs = {"max_new_tokens": args.max_new_tokens, "pad_token_id": tokenizer.eos_token_id}
    if args.sample:
        torch.manual_seed(args.seed)
        kwargs.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if stream:
        kwargs["streamer"] = _answer_streamer(tokenizer)
    with torch.no_grad():
        out = model.generate(**enc, **kwargs)
    return tokenizer.decode(out[0, enc.input_ids.shape[1] :], skip_special_tokens=True).strip()


def chat_main(argv: list[str] | None = None) -> int:
    """Entry point of ``bt-chat``; returns the exit status."""
    args = chat_parser().parse_args(argv)
    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        print(f"bt-chat: error: {str(folder)!r} is not a model folder (no config.json)", file=sys.stderr)
        return 2
    if args.temperature <= 0 or not 0 < args.top_p <= 1:
        print("bt-chat: error: --temperature must be > 0 and --top-p in (0, 1]", file=sys.stderr)
        return 2
    from transformers import AutoTokenizer

    from .modeling import BTSpikingForCausalLM

    try:
        model = BTSpikingForCausalLM.from_pretrained(folder, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        print(f"bt-chat: error: cannot load {str(folder)!r}: {exc}", file=sys.stderr)
        return 2
    model.set_spiking(timesteps=args.timesteps, path=args.path, operators=args.operators)
    try:
        if args.prompt is not None:
            _reply(model, tokenizer, [{"role": "user", "content": args.prompt}], args, stream=True)
            return 0
        messages: list[dict] = []
        interactive = sys.stdin.isatty()
        while True:
            if interactive:
                print("> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                return 0
            if not line.strip():
                continue
            messages.append({"role": "user", "content": line.strip()})
            answer = _reply(model, tokenizer, messages, args, stream=True)  # printed as it is generated
            messages.append({"role": "assistant", "content": answer})
    except KeyboardInterrupt:
        return 130
