"""``bt-fit``: fit a spiking approximator of a function from the shell.

Examples::

    bt-fit silu                                  # a built-in target, default settings
    bt-fit --list                                # the built-in targets and their domains
    bt-fit mypkg.mymodule:myfunc --domain -4 4   # your own function, imported by path
                                                 # (from the current folder too)
    bt-fit exp --neurons 32 --timesteps 8 --out fitted/
    bt-fit mypkg.mymodule:myfunc --domain -4 4 --neurons 16 --spikes 3 --pareto

It writes ``<name>.safetensors``, ``<name>.json`` and ``<name>.png`` to
``--out`` (default: the current folder), with ``--pareto`` also
``<name>-pareto.md`` / ``.csv`` / ``.png`` (the error / spikes / neurons
trade-off of the target), all of them or none; files of that
name already there are kept unless ``--force`` is given. Exit status: 0 done,
1 the run failed (e.g. a file could not be written), 2 a usage error, 130
Ctrl-C (see `bt_neurons._commands`).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bt_neurons._commands import CommandError, HelpFormatter, run_command

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["main", "resolve_function"]

#: The spike budgets ``--pareto`` sweeps (mean spikes per evaluation).
PARETO_BUDGETS = (1, 2, 3, 4, 6)

#: The most neurons ``--neurons`` accepts (the shipped approximators use up to 128).
MAX_NEURONS = 16384


class CLIError(CommandError):
    """A mistake in the command line; printed as ``bt-fit: error: ...`` with exit status 2."""


def _import_from_cwd(module_name: str):
    """Import ``module_name`` as ``python -m`` would: the current folder first on ``sys.path``.

    The folder is on ``sys.path`` only during the import (unless it already was).
    """
    cwd = os.getcwd()
    added = not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path)
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def resolve_function(spec: str) -> Callable[[Tensor], Tensor]:
    """Import ``module.path:function`` (never evaluates text) and return a float64 tensor function.

    The module is looked up in the current folder first, then on ``sys.path``.
    The function may accept a tensor (preferred) or a single float; in the
    latter case it is applied element by element.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CLIError(f"a function target must look like 'package.module:function', got {spec!r}")
    try:
        module = _import_from_cwd(module_name)
    except ImportError as exc:
        raise CLIError(f"cannot import module {module_name!r} for target {spec!r}: {exc}") from None
    except Exception as exc:  # the module itself raised (a SyntaxError, an error at import time)
        raise CLIError(
            f"importing module {module_name!r} for target {spec!r} raised {type(exc).__name__}: {exc}"
        ) from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise CLIError(f"{spec!r} is not callable")
    fn = obj

    def as_tensor_function(x: Tensor) -> Tensor:
        import torch

        try:
            y = fn(x)
        except (TypeError, ValueError, RuntimeError, AttributeError):
            y = None  # not a tensor function: fall back to one float at a time
        if y is not None:
            try:
                y = torch.as_tensor(y, dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(
                    f"target {spec!r} must return numbers, got {type(y).__name__} for a tensor"
                ) from None
            if y.shape == x.shape:
                return y
            if y.dim() > 0:
                raise ValueError(
                    f"target {spec!r} must work element by element: for an input of shape "
                    f"{tuple(x.shape)} it returned shape {tuple(y.shape)}"
                )
        values = []
        for v in x.reshape(-1).tolist():
            try:
                out = fn(float(v))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"target {spec!r} raised {type(exc).__name__} at x={v:g}: {exc}") from None
            try:
                values.append(float(out))
            except (TypeError, ValueError):
                raise ValueError(
                    f"target {spec!r} must return a number for a number, got {type(out).__name__} {out!r:.40}"
                ) from None
        return torch.tensor(values, dtype=torch.float64).reshape(x.shape)

    as_tensor_function.__name__ = attr.split(".")[-1]
    return as_tensor_function


def _list_targets() -> str:
    from .targets import BUILTIN_TARGETS

    lines = [f"{'target':<11}{'domain':<22}{'neurons':>8}{'steps':>6}  description"]
    for spec in BUILTIN_TARGETS.values():
        lo, hi = spec.full_domain
        dom = f"[{lo:g}, {hi:g}]" + (" (log)" if spec.partition == "log" else "")
        lines.append(f"{spec.name:<11}{dom:<22}{spec.neurons:>8}{spec.timesteps:>6}  {spec.description}")
    return "\n".join(lines)


def _check_out(out: Path) -> None:
    """``--out`` is a folder bt-fit can write to, or one it can create (it is created only to write)."""
    existing = out
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".bt-fit-probe-"):
            pass
    except OSError as exc:
        raise CLIError(f"--out {str(out)!r} is not a writable folder: {exc.strerror or exc}") from None


def _check_name(name: str) -> str:
    """``--name`` must be a plain file stem: the outputs stay inside ``--out``."""
    if not name or name in (".", "..") or name.startswith(".") or re.search(r"[/\\\x00]", name):
        raise CLIError(f"--name must be a plain file name without folders (e.g. 'my_silu'), got {name!r}")
    return name


def _outputs(out: Path, name: str, force: bool, pareto: bool = False) -> list[Path]:
    """The output paths (three, six with ``pareto``).

    Refuses folders in their way, and existing files unless ``force``.
    """
    suffixes = [".safetensors", ".json", ".png"]
    if pareto:
        suffixes += ["-pareto.md", "-pareto.csv", "-pareto.png"]
    paths = [out / f"{name}{suffix}" for suffix in suffixes]
    folders = [p.name for p in paths if p.is_dir()]
    if folders:
        raise CLIError(f"--out {str(out)!r} holds a folder named {folders[0]!r}: bt-fit writes a file there")
    existing = [p.name for p in paths if p.exists() or p.is_symlink()]
    if existing and not force:
        raise CLIError(
            f"--out {str(out)!r} already holds {', '.join(existing)} (use --force to replace them, "
            "or --name to write others)"
        )
    return paths


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bt-fit",
        description="Fit an array of spiking CustomNeurons to a function and save it.",
        epilog="Built-in targets: bt-fit --list. Your own: bt-fit package.module:function --domain LO HI "
        "(the module is imported from the current folder or the installed packages).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("target", nargs="?", help="a built-in target name or package.module:function")
    p.add_argument("--list", action="store_true", help="list the built-in targets and exit")
    from .targets import TargetSpec

    def target_default(option: str, listed: bool = True) -> str:
        """The default of an option a target chooses: the built-in target's, or TargetSpec's."""
        own = TargetSpec.__dataclass_fields__[option].default
        return (
            f"(default: the built-in target's{', see --list' if listed else ''}; {own} for your own function)"
        )

    p.add_argument(
        "--domain",
        nargs=2,
        type=float,
        metavar=("LO", "HI"),
        help="domain covered by neurons (default: the built-in target's, see --list; "
        "required for your own function)",
    )
    p.add_argument("--neurons", type=int, help=f"number of neurons P {target_default('neurons')}")
    p.add_argument(
        "--timesteps",
        type=int,
        help=f"time steps per neuron T, the most spikes per evaluation {target_default('timesteps')}",
    )
    p.add_argument(
        "--partition",
        choices=["linear", "log", "power", "curvature"],
        help=f"how the domain is split {target_default('partition', listed=False)}",
    )
    p.add_argument(
        "--symmetry",
        choices=["none", "even", "odd"],
        help=f"use f(-x) = f(x) or -f(x) {target_default('symmetry', listed=False)}",
    )
    p.add_argument(
        "--metric",
        choices=["abs", "rel"],
        help=f"minimise absolute or relative error {target_default('metric', listed=False)}",
    )
    p.add_argument(
        "--distribution",
        metavar="NAME",
        help="input distribution the error is fitted and measured on: uniform, normal, normal:S (N(0, S^2)) "
        "or log-uniform (default: the built-in target's; uniform over the domain for your own function)",
    )
    p.add_argument(
        "--coding",
        choices=["level", "binary"],
        help="level: staircase neurons; binary: resetting neurons whose spikes are a binary expansion "
        f"{target_default('coding', listed=False)}",
    )
    p.add_argument(
        "--spikes",
        type=float,
        help="budget of mean spikes per evaluation on the input distribution; picks the most time steps "
        "within it (binary coding, implied; default: none, the target's --timesteps)",
    )
    p.add_argument(
        "--pareto",
        action="store_true",
        help="also sweep neurons x spike budgets and write <name>-pareto.md/.csv/.png "
        "(error vs spikes vs neurons)",
    )
    p.add_argument(
        "--steps", type=int, default=300, help="gradient-descent steps (binary: any > 0 refines the edges)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the measured samples")
    p.add_argument("--out", default=".", help="output folder (default: the current folder)")
    p.add_argument("--name", help="file stem of the outputs (default: the target's name)")
    p.add_argument(
        "--force", action="store_true", help="replace <name>.safetensors/.json/.png if --out holds them"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _run(args: argparse.Namespace) -> int:
    import torch

    from bt_neurons import __version__

    from .fitting import fit_approximator
    from .plotting import plot_fit
    from .storage import approximator_writers, atomic_write_files
    from .targets import TargetSpec, get_target

    if args.target is None:
        raise CLIError("a target is required (e.g. 'bt-fit silu'; 'bt-fit --list' shows the built-ins)")
    if ":" in args.target:
        fn = resolve_function(args.target)
        if args.domain is None:
            raise CLIError("--domain LO HI is required for a function target")
        spec = TargetSpec(fn.__name__, fn, (args.domain[0], args.domain[1]))
    else:
        try:
            spec = get_target(args.target)
        except KeyError as exc:
            raise CLIError(exc.args[0]) from None
    if args.domain is not None:
        lo, hi = args.domain
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise CLIError(f"--domain must be finite numbers, got {lo} {hi}")
        if not lo < hi:
            raise CLIError(f"--domain is empty: LO must be < HI, got {lo:g} {hi:g}")
    if args.distribution is not None:
        from dataclasses import replace

        from .targets import named_distribution

        shaped = replace(
            spec,
            **({"domain": tuple(args.domain)} if args.domain else {}),
            **({"symmetry": args.symmetry} if args.symmetry else {}),
        )
        try:
            spec = replace(spec, distribution=named_distribution(args.distribution, shaped.full_domain))
        except ValueError as exc:
            raise CLIError(f"--distribution: {exc}") from None
    for opt in ("neurons", "timesteps"):
        v = getattr(args, opt)
        if v is not None and v < (2 if opt == "timesteps" else 1):
            raise CLIError(f"--{opt} must be >= {2 if opt == 'timesteps' else 1}, got {v}")
    if args.timesteps is not None and args.timesteps > 64:
        raise CLIError(f"--timesteps must be <= 64, got {args.timesteps}")
    if args.neurons is not None and args.neurons > MAX_NEURONS:
        raise CLIError(f"--neurons must be <= {MAX_NEURONS}, got {args.neurons}")
    if args.spikes is not None and not (math.isfinite(args.spikes) and args.spikes > 0):
        raise CLIError(f"--spikes must be a number > 0, got {args.spikes:g}")
    if args.spikes is not None and args.coding == "level":
        raise CLIError("--spikes (a spike budget) needs --coding binary")
    if args.steps < 0:
        raise CLIError(f"--steps must be >= 0, got {args.steps}")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", args.device):
        raise CLIError(f"--device must be cpu or cuda (or cuda:N), got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError("--device cuda was requested but CUDA is not available")
    name = _check_name(args.name if args.name is not None else spec.name)
    out = Path(args.out)
    _check_out(out)
    png = _outputs(out, name, args.force, args.pareto)[2]

    start = time.perf_counter()
    try:
        result = fit_approximator(
            spec,
            tuple(args.domain) if args.domain else None,
            neurons=args.neurons,
            timesteps=args.timesteps,
            partition=args.partition,
            symmetry=args.symmetry,
            metric=args.metric,
            coding=args.coding,
            spikes=args.spikes,
            steps=args.steps,
            seed=args.seed,
            device=args.device,
            progress=not args.quiet,
            name=name,
        )
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the user's function raised
        raise CLIError(f"the target function raised {type(exc).__name__}: {exc}") from None
    elapsed = time.perf_counter() - start

    approx, report, settings = result.approximator, result.report, result.settings
    shape = f"{approx.neurons} neurons x {approx.T} steps"
    print(f"bt-fit {spec.name}: {shape} on {spec.full_domain}, {elapsed:.1f} s")
    for line in report.lines():
        print("  " + line)
    metadata = {
        **settings,
        "errors": report.as_dict(),
        "bt_neurons_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "command": "bt-fit " + " ".join(args.argv),
    }
    writers = approximator_writers(approx, out, name, metadata)
    writers.append(
        (
            png,
            lambda p: plot_fit(approx, spec.fn, spec.full_domain, p, title=f"bt-fit {spec.name}"),
        )
    )
    if args.pareto:
        from .pareto import pareto_front, pareto_writers

        sizes = sorted(
            {max(1, approx.neurons // 4), max(1, approx.neurons // 2), approx.neurons, 2 * approx.neurons}
        )
        print(f"Pareto sweep: {sizes} neurons x spike budgets {list(PARETO_BUDGETS)}")
        points = pareto_front(
            spec,
            neurons=sizes,
            spikes=PARETO_BUDGETS,
            progress=None if args.quiet else print,
            partition=args.partition,
            symmetry=args.symmetry,
            metric=args.metric,
            steps=args.steps,
            seed=args.seed,
            **({"domain": tuple(args.domain)} if args.domain else {}),
        )
        writers += pareto_writers(points, out, name)
    files = atomic_write_files(writers)
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bt-fit``; returns the exit status (0, 1, 2 or 130; see the module docs)."""
    argv = sys.argv[1:] if argv is None else list(argv)

    def body() -> int:
        args = _parser().parse_args(argv)
        args.argv = argv
        if args.list:
            print(_list_targets())
            return 0
        return _run(args)

    return run_command("bt-fit", body)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
