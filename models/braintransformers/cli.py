"""``bt-convert`` and ``bt-chat``: convert a checkpoint and talk to the spiking model from the shell.

``bt-convert SRC DST --timesteps T`` converts a local Llama / Qwen2 checkpoint
(a folder, or a ``.gguf`` file) and writes the spiking model and its tokenizer to
``DST`` (a folder written whole or not at all), with progress bars on stderr;
``--distill-file F`` adds stage 1 (quantization-aware distillation to the
source model on the text of F). ``bt-chat DST`` generates from it, printing
each answer as it is generated: once with ``--prompt``, or a conversation read
line by line from stdin.

Both refuse bad input before the work starts (options, files, a DST that
exists without ``--force`` or cannot be written) and end every error with
one line ``prog: error: ...``: exit status 2 for a usage error (a bad option
or a missing / broken input file), 1 for a run that failed, 130 for Ctrl-C
(see `bt_neurons._commands`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bt_neurons._commands import EXIT_FAILED, CommandError, HelpFormatter, one_line, run_command

from .._cli import _nonnegative, _positive, _positive_real, _read_text, _sampling_arguments, _seed

__all__ = ["chat_main", "convert_main"]


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
        formatter_class=HelpFormatter,
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
    p.add_argument("--seed", type=_seed, default=0, help="seed of the residual rotation")
    p.add_argument(
        "--group-size",
        type=_nonnegative,
        help="input channels per encoder scale of the linear layers (default: the head dimension "
        "when it divides every layer's width, else 0; 0: one scale per token)",
    )
    p.add_argument(
        "--head",
        choices=("untied", "factored", "float-mixer", "spiking-mixer"),
        help="how a rotated model meets tied embeddings: factored (default: the untied head's "
        "weight kept as two factors, tied, the ANN's memory), untied (a second vocab x hidden matrix), "
        "float-mixer (tied, a float hidden x hidden product before the head's encoder) or "
        "spiking-mixer (tied, a hidden x hidden Synapsis)",
    )
    p.add_argument(
        "--final-mixer",
        action="store_true",
        help="the same as --head spiking-mixer",
    )
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument(
        "--distill-file",
        help="a UTF-8 text file to run stage 1 on after conversion: quantization-aware distillation "
        "to the source model, which recovers most of the accuracy lost at small T (default: none, no "
        "distillation)",
    )
    p.add_argument("--distill-steps", type=_positive, default=200, help="distillation steps")
    p.add_argument(
        "--distill-lr", type=_positive_real, default=3e-5, help="peak learning rate of the distillation"
    )
    p.add_argument("--distill-seq", type=_positive, default=256, help="tokens per distillation window")
    p.add_argument(
        "--distill-learn-clip",
        action="store_true",
        help="also train the encoders' clip ratios (learned step size, peak lr 1e-3)",
    )
    _spiking_arguments(p, defaults=True)
    return p


def _write_model(model, tokenizer, dst: Path, force: bool) -> None:
    """Save into a temporary folder beside ``dst``, then move it into place (the old one kept until then)."""
    from bt_neurons._atomic_writes import atomic_write_folder

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)

    try:
        atomic_write_folder(dst, write, replace=force)
    except FileExistsError:  # it appeared while converting
        raise CommandError(f"dst {str(dst)!r} already exists (use --force to replace it)") from None


def _inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


def _check_paths(src: Path, dst: Path, gguf_file: str | None, force: bool) -> None:
    """Everything about SRC and DST that can be known before loading: nothing is converted in vain."""
    if not src.exists():
        raise CommandError(f"src {str(src)!r} does not exist: expected a checkpoint folder or a .gguf file")
    if not src.is_dir():
        what = "a checkpoint folder" if gguf_file else "a checkpoint folder or a .gguf file"
        raise CommandError(f"src {str(src)!r} is not {what}")
    parent = dst.parent if str(dst.parent) else Path(".")
    if dst.exists() or dst.is_symlink():
        if not force:
            raise CommandError(f"dst {str(dst)!r} already exists (use --force to replace it)")
        if not dst.is_dir():
            raise CommandError(
                f"dst {str(dst)!r} is a file, not a model folder: --force replaces folders only"
            )
        target = dst.resolve()
        if _inside(src.resolve(), target):
            raise CommandError(f"dst {str(dst)!r} holds src: replacing it would delete the source checkpoint")
        if _inside(Path.cwd().resolve(), target):
            raise CommandError(f"dst {str(dst)!r} holds the current folder: --force will not replace it")
    if not parent.is_dir():
        raise CommandError(f"the parent folder of dst {str(dst)!r} does not exist (or is not a folder)")
    try:  # a read-only parent is found now, not after the conversion
        os.rmdir(tempfile.mkdtemp(prefix=f".{dst.name}.probe.", dir=parent))
    except OSError as exc:
        raise CommandError(
            f"cannot write dst {str(dst)!r}: its folder {str(parent)!r} is not writable "
            f"({exc.strerror or exc})"
        ) from None


def _convert(argv: list[str] | None) -> int:
    args = convert_parser().parse_args(argv)
    start = time.perf_counter()
    src, dst = Path(args.src), Path(args.dst)
    if src.suffix == ".gguf" and src.is_file() and args.gguf_file is None:
        src, args.gguf_file = src.parent, src.name
    _check_paths(src, dst, args.gguf_file, args.force)
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
    distill_ids = None
    if distill_text is not None:  # checked before the conversion, which takes a while
        if tokenizer is None:
            raise CommandError("--distill-file needs the source's tokenizer, and src has none")
        distill_ids = tokenizer(distill_text, return_tensors="pt").input_ids[0]
        if distill_ids.numel() <= args.distill_seq:
            raise CommandError(
                f"--distill-file {args.distill_file!r} has {distill_ids.numel()} tokens; distillation "
                f"windows need more than --distill-seq (seq={args.distill_seq})"
            )
        limit = getattr(source.config, "max_position_embeddings", args.distill_seq)
        if args.distill_seq > limit:
            raise CommandError(f"--distill-seq must be <= the model's max_position_embeddings ({limit})")
    if text is not None and tokenizer is None:
        raise CommandError("--calibration-file needs the source's tokenizer, and src has none")
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
        head=args.head,
        progress=True,
    )
    if distill_ids is not None:
        from ..training import distill

        print(
            f"stage 1: distilling for {args.distill_steps} steps on {distill_ids.numel()} tokens ...",
            file=sys.stderr,
        )
        losses = distill(
            model,
            source,
            distill_ids,
            steps=args.distill_steps,
            lr=args.distill_lr,
            seq=args.distill_seq,
            learn_clip=args.distill_learn_clip,
            progress=True,
        )
        print(f"distillation KL per token: {losses[0]:.4f} -> {losses[-1]:.4f}", file=sys.stderr)
    print(f"writing {dst} ...", file=sys.stderr)
    _write_model(model, tokenizer, dst, args.force)
    print(f"wrote {dst} ({time.perf_counter() - start:.1f} s in all)", file=sys.stderr)
    return 0


def convert_main(argv: list[str] | None = None) -> int:
    """Entry point of ``bt-convert``; returns the exit status (0, 1, 2 or 130; see the module docs)."""
    return run_command(
        "bt-convert", lambda: _convert(argv), usage_errors=(ValueError, TypeError, FileNotFoundError)
    )


def chat_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bt-chat",
        description="Generate text with a converted spiking model; the answer is printed as it is generated.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", help="folder written by bt-convert")
    p.add_argument(
        "--prompt",
        "-p",
        help="generate once for this prompt (default: a conversation, read line by line from stdin)",
    )
    p.add_argument("--max-new-tokens", type=_positive, default=64, help="at most this many tokens per answer")
    _sampling_arguments(p, temperature=0.7, top_p=0.9)
    p.add_argument(
        "--timesteps", "-T", type=_positive, help="override the model's T (default: the model's T)"
    )
    p.add_argument("--raw", action="store_true", help="do not apply the tokenizer's chat template")
    p.add_argument(
        "--stats",
        action="store_true",
        help="after each answer, print on stderr how long reading the prompt and generating took (tokens/s)",
    )
    _spiking_arguments(p, defaults=False)
    return p


class _GenerationClock:
    """A ``generate()`` streamer that times the prompt and the new tokens, passing every call on to ``inner``.

    ``generate`` hands a streamer the prompt first, then each new token as it is
    chosen: the prompt's time runs from `start` to the first new token (reading
    the prompt and choosing one token), the generation's from there to the end.
    """

    def __init__(self, inner=None) -> None:
        self.inner = inner
        self.started = self.first = self.ended = None
        self.prompt_tokens = self.new_tokens = 0

    def start(self) -> None:
        self.started = time.perf_counter()

    def put(self, value) -> None:
        if self.inner is not None:
            self.inner.put(value)
        if self.first is None and not self.prompt_tokens:
            self.prompt_tokens = int(value.shape[-1])  # the prompt comes first, all at once
            return
        if self.first is None:
            self.first = time.perf_counter()
        self.new_tokens += int(value.numel())

    def end(self) -> None:
        if self.inner is not None:
            self.inner.end()
        self.ended = time.perf_counter()

    def summary(self) -> str:
        """One line: prompt tokens and their time, new tokens and their rate."""
        if self.first is None:
            return f"[{self.prompt_tokens} prompt tokens; no new token]"
        prompt_s, rest_s = self.first - self.started, self.ended - self.first
        line = (
            f"[{self.prompt_tokens} prompt tokens and the first new one in {prompt_s:.2f} s "
            f"({self.prompt_tokens / prompt_s:.1f} prompt tokens/s)"
        )
        more = self.new_tokens - 1
        if more:
            line += f"; {more} more in {rest_s:.2f} s ({more / rest_s:.2f} tokens/s)"
        return line + "]"


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
    length, limit = enc.input_ids.shape[1], model.config.max_position_embeddings
    if length == 0:
        raise CommandError("the prompt has no tokens")
    if length >= limit:
        what = "the prompt" if len(messages) == 1 else "the conversation"
        raise CommandError(
            f"{what} has {length} tokens; the model reads at most {limit} (max_position_embeddings), "
            "one of them for the answer",
            status=2 if len(messages) == 1 else EXIT_FAILED,
        )
    kwargs = {
        "max_new_tokens": min(args.max_new_tokens, limit - length),
        "pad_token_id": tokenizer.eos_token_id,
    }
    if args.sample:
        torch.manual_seed(args.seed)
        kwargs.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    streamer = _answer_streamer(tokenizer) if stream else None
    clock = _GenerationClock(streamer) if getattr(args, "stats", False) else None
    if clock is not None or streamer is not None:
        kwargs["streamer"] = clock if clock is not None else streamer
    with torch.no_grad():
        if clock is not None:
            clock.start()
        out = model.generate(**enc, **kwargs)
    if clock is not None:
        print(clock.summary(), file=sys.stderr, flush=True)
    return tokenizer.decode(out[0, enc.input_ids.shape[1] :], skip_special_tokens=True).strip()


def _load_chat_model(folder: Path):
    """The model and tokenizer of a bt-convert folder; every problem is a `CommandError` naming the file."""
    if not (folder / "config.json").is_file():
        raise CommandError(f"{str(folder)!r} is not a model folder (no config.json)")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise CommandError(
            f"{str(folder)!r} has no tokenizer (tokenizer.json or tokenizer_config.json); bt-convert "
            "writes one when the source checkpoint has one"
        )
    from transformers import AutoTokenizer

    from .modeling import BTSpikingForCausalLM

    try:
        model = BTSpikingForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot load {str(folder)!r}: {one_line(exc)}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # a broken tokenizer file surfaces as many kinds of error
        raise CommandError(f"cannot load the tokenizer in {str(folder)!r}: {one_line(exc)}") from None
    return model, tokenizer


def _chat(argv: list[str] | None) -> int:
    args = chat_parser().parse_args(argv)
    if args.prompt is not None and not args.prompt.strip():
        raise CommandError(
            "--prompt is empty: give a text to answer (or leave --prompt out to chat on stdin)"
        )
    model, tokenizer = _load_chat_model(Path(args.model))
    model.set_spiking(timesteps=args.timesteps, path=args.path, operators=args.operators)
    if args.prompt is not None:
        _reply(model, tokenizer, [{"role": "user", "content": args.prompt}], args, stream=True)
        return 0
    messages: list[dict] = []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        try:
            line = sys.stdin.readline()
        except UnicodeDecodeError as exc:
            raise CommandError(f"stdin is not UTF-8 text ({one_line(exc)})") from None
        if not line:
            return 0
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line.strip()})
        answer = _reply(model, tokenizer, messages, args, stream=True)  # printed as it is generated
        messages.append({"role": "assistant", "content": answer})


def chat_main(argv: list[str] | None = None) -> int:
    """Entry point of ``bt-chat``; returns the exit status (0, 1, 2 or 130; see the module docs)."""
    return run_command(
        "bt-chat",
        lambda: _chat(argv),
        usage_errors=(ValueError, FileNotFoundError),
        interrupted="interrupted",
    )
