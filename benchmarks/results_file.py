"""What every benchmark script shares: the machine description and the RESULTS.md update.

Each script owns one section of ``benchmarks/RESULTS.md``, between the
markers ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; a rerun replaces
only that section and keeps the others.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

__all__ = [
    "RESULTS_HEADER",
    "markers",
    "machine_info",
    "write_section",
    "report",
    "peak_rss_rise_mib",
    "MALLOC_ENV",
]

RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Each section is produced by one script under `benchmarks/` and records the command, machine and date. "
    "Times are medians from one interleaved run (contenders alternate round-robin, so drift in machine load "
    "hits all of them alike); absolute milliseconds depend on the machine, the ratios between contenders are "
    "what matter.\n"
)


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of section ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def machine_info(threads: int, packages: tuple[str, ...] = ("bt-neurons",)) -> dict[str, str]:
    """Platform, CPU model, Python, torch, the given packages' versions and the thread count."""
    cpu = platform.processor() or "unknown"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        if match:
            cpu = match.group(1).strip()
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "cpu": f"{cpu} ({os.cpu_count()} logical CPUs visible)",
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    for name in packages:
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = "not installed"
    info["threads"] = f"torch.set_num_threads({threads}); torch.get_num_threads() = {torch.get_num_threads()}"
    return info


def write_section(path: Path, name: str, section: str) -> None:
    """Replace section ``name`` of ``path`` with ``section`` (which includes its markers), or append it."""
    start_mark, end_mark = markers(name)
    text = path.read_text() if path.exists() else ""
    if not text.strip():
        text = RESULTS_HEADER
    start = text.find(start_mark)
    end = text.find(end_mark, start + 1) if start != -1 else -1
    if start != -1 and end != -1:
        text = text[:start] + section.rstrip("\n") + text[end + len(end_mark) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text if text.endswith("\n") else text + "\n")


def report(
    name: str,
    title: str,
    lines: list[str],
    *,
    script: str,
    argv: list[str] | None,
    start: float,
    threads: int,
    packages: tuple[str, ...] = ("bt-neurons",),
    results: Path | None = None,
) -> None:
    """Print ``lines`` with a footer (command, date, runtime since ``start``, machine); write section ``name``.

    ``script`` is the script's path as run from the repository root; ``argv``
    its arguments (None: ``sys.argv[1:]``); the section goes to ``results``
    (a RESULTS.md) when given.
    """
    command = f"python {script} " + " ".join(argv if argv is not None else sys.argv[1:])
    footer = [
        f"Command: `{command.strip()}`  ",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"Runtime: {time.perf_counter() - start:.0f} s  ",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_info(threads, packages).items()),
    ]
    print("\n".join(lines + footer))
    if results is not None:
        start_mark, end_mark = markers(name)
        section = [start_mark, f"## {title}", "", *lines, *footer, end_mark]
        write_section(results, name, "\n".join(section) + "\n")
        print(f"\nwrote section to {results}")


#: glibc returns large freed blocks to the system at once with this setting, so that the
#: resident-set high-water mark measures what one call really needs.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{field} not found in /proc/self/status")
    return int(match.group(1))


def peak_rss_rise_mib(fn) -> float:
    """Peak resident-memory rise (MiB) while ``fn()`` runs (Linux; run ``fn`` once before to warm up).

    Resets the high-water mark through ``/proc/self/clear_refs``; meaningful when
    the process was started with :data:`MALLOC_ENV`.
    """
    import gc

    gc.collect()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    fn()
    return max(_status_kib("VmHWM") - before, 0) / 1024


def timed(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median milliseconds of each function, interleaved round-robin after one warm-up."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[key].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}
