"""What the model families' commands share: argparse types and reading a text file named by an option."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bt_neurons._commands import CommandError

__all__ = [
    "_fraction",
    "_nonnegative",
    "_positive",
    "_positive_real",
    "_read_text",
    "_sampling_arguments",
    "_seed",
]


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


def _seed(text: str) -> int:
    """An argparse type: a random seed, an integer torch accepts (-2**63 .. 2**64 - 1)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not -(2**63) <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected a seed in [-2**63, 2**64 - 1], got {value}")
    return value


def _real(what: str, accept):
    """An argparse type: a finite float for which ``accept(value)`` holds, described as ``what``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_positive_real = _real("a finite number > 0", lambda v: v > 0)
_fraction = _real("a number in (0, 1]", lambda v: 0 < v <= 1)


def _read_text(option: str, path: str | None) -> str | None:
    """The UTF-8 text of the file an option names (None when the option is absent); never empty."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"cannot read {option} {path!r}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"offset {exc.start})"
        ) from None
    except OSError as exc:
        raise CommandError(f"cannot read {option} {path!r}: {exc.strerror or exc}") from None
    if not text.strip():
        raise CommandError(f"{option} {path!r} is empty: expected UTF-8 text")
    return text


def _sampling_arguments(parser: argparse.ArgumentParser, temperature: float, top_p: float) -> None:
    """``--sample``, ``--temperature``, ``--top-p`` and ``--seed``, with these defaults."""
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument(
        "--temperature", type=_positive_real, default=temperature, help="sampling temperature, with --sample"
    )
    parser.add_argument("--top-p", type=_fraction, default=top_p, help="nucleus sampling mass, with --sample")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed of the sampling, with --sample")
