"""How the bt-neurons commands end: exit statuses, one-line errors, and Ctrl-C from the first second.

Every command (``bt-fit``, ``bt-convert``, ``bt-chat``, ``bt-demo``, ``bt-spikegpt``) exits with

- ``0``: done;
- ``1``: the run failed (a file could not be written, the disk is full, out of
  memory, ...);
- ``2``: a usage error: a bad option, or an input named on the command line
  that is missing or broken (argparse's own errors exit with 2 too);
- ``130``: interrupted (Ctrl-C); nothing was written.

An error is reported as one line on stderr, ``prog: error: message``, never as
a traceback. `run_command` does this for a command's body.

Ctrl-C while a command starts: ``import bt_neurons`` takes seconds (torch,
SpikingJelly, transformers), and the console script imports it before the
command's ``main`` runs. `guard_startup`, called first by ``import
bt_neurons``, makes Ctrl-C during those seconds exit with 130 and one line
too; it does something only in a process that is one of the commands above,
and `run_command` hands Ctrl-C back to Python's usual ``KeyboardInterrupt``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from collections.abc import Callable

__all__ = [
    "COMMANDS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "HelpFormatter",
    "guard_startup",
    "one_line",
    "run_command",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: The console scripts of bt-neurons (``[project.scripts]`` in pyproject.toml).
COMMANDS = ("bt-fit", "bt-convert", "bt-chat", "bt-demo", "bt-spikegpt")


class CommandError(Exception):
    """A reason a command stops: printed as ``prog: error: message``, exit status ``status``.

    Args:
        message: what went wrong, naming the option or the file.
        status: `EXIT_USAGE` (default: the user can fix the command line or
            the input) or `EXIT_FAILED` (the run itself failed).
    """

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """The commands' ``--help``: ``(default: X)`` after every option's help, unless it states its default.

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


def one_line(exc: BaseException | str) -> str:
    """The text of ``exc`` on one line (runs of whitespace and newlines become one space)."""
    text = exc if isinstance(exc, str) else str(exc)
    return " ".join(text.split()) or (type(exc).__name__ if not isinstance(exc, str) else "")


def _running_command() -> str | None:
    """The name of the bt-neurons command this process runs, if it runs one."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    name = re.sub(r"(-script\.pyw?|\.exe)$", "", name)
    return name if name in COMMANDS else None


def _interrupted_while_starting(signum, frame) -> None:
    prog = _running_command() or "bt-neurons"
    sys.stderr.write(f"{prog}: error: interrupted while starting; nothing was done\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_INTERRUPTED)


def guard_startup() -> None:
    """While a bt-neurons command starts, Ctrl-C exits with status 130 and one line (no traceback).

    Does nothing in any other program (a notebook, a script, pytest), outside
    the main thread, or when SIGINT is not Python's default handler (ignored,
    or handled by the program).
    """
    if _running_command() is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_starting)


def _say(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


def _os_error(exc: OSError) -> str:
    """``[Errno 28] No space left on device: 'x'`` -> ``'x': No space left on device``."""
    where = exc.filename if exc.filename is not None else None
    if exc.strerror and where is not None:
        return f"{str(where)!r}: {exc.strerror}"
    return one_line(exc)


def run_command(
    prog: str,
    body: Callable[[], int | None],
    *,
    usage_errors: tuple[type[BaseException], ...] = (),
    interrupted: str = "interrupted; nothing was written",
) -> int:
    """Run a command's ``body`` and turn whatever it raises into one line and an exit status.

    Args:
        prog: the command's name, the prefix of its error lines.
        body: the command; returns its exit status (``None``: 0).
        usage_errors: exception types that mean the user's input was wrong
            (exit 2), e.g. ``(ValueError,)`` for a library's argument checks.
        interrupted: what Ctrl-C prints after ``prog: error:``.

    Returns:
        0, 1, 2 or 130 (see the module docs). argparse's ``SystemExit`` (``--help``,
        a bad option) passes through unchanged.
    """
    try:
        if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        status = body()
        return EXIT_OK if status is None else status
    except CommandError as exc:
        _say(prog, one_line(exc))
        return exc.status
    except KeyboardInterrupt:
        _say(prog, interrupted)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`bt-chat ... | head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except usage_errors as exc:
        _say(prog, one_line(exc))
        return EXIT_USAGE
    except MemoryError:
        _say(prog, "out of memory")
        return EXIT_FAILED
    except OSError as exc:
        _say(prog, _os_error(exc))
        return EXIT_FAILED
    except Exception as exc:  # a failure in the run itself (a bug, or torch running out of memory)
        _say(prog, f"{type(exc).__name__}: {one_line(exc)}")
        return EXIT_FAILED


guard_startup()  # on import: `import bt_neurons` runs this before torch is imported
