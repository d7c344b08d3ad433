"""Saving and loading approximators: safetensors for the tensors, JSON for the metadata.

Files are written atomically (to a temporary file in the same folder, then
renamed), so an interrupted write never leaves a half-written file; loading
never unpickles anything (safetensors and JSON only).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "FORMAT_VERSION",
    "atomic_write_files",
    "approximator_writers",
    "save_approximator",
    "read_approximator_files",
]

FORMAT_VERSION = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_TENSORS = ("edges", "thresholds", "amplitudes", "left_tail", "right_tail")
_REQUIRED = ("format_version", "target", "timesteps", "symmetry")


def atomic_write_files(writers: Iterable[tuple[Path, Callable[[Path], None]]]) -> list[Path]:
    """Write several files so that either all of them appear or none does.

    Each writer gets a temporary path in the destination folder; when every
    writer has succeeded the temporaries are renamed into place. On any error
    (or Ctrl-C) the temporaries are removed and the exception propagates.

    Args:
        writers: ``(destination, write_function)`` pairs.

    Returns:
        The destination paths.
    """
    writers = list(writers)
    temps: list[Path] = []
    try:
        for dest, write in writers:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
            os.close(fd)
            temps.append(Path(tmp))
            write(Path(tmp))
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the usual mode
        for (dest, _), tmp in zip(writers, temps, strict=True):
            os.replace(tmp, dest)
        temps = []
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return [dest for dest, _ in writers]


def _tensors(approx) -> dict[str, torch.Tensor]:
    return {name: getattr(approx, name).detach().to(torch.float32).cpu().contiguous() for name in _TENSORS}


def _json_safe(value):
    """NaN and infinities become null (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def approximator_writers(
    approx, directory: str | os.PathLike, name: str, metadata: dict
) -> list[tuple[Path, Callable[[Path], None]]]:
    """``(path, writer)`` pairs of ``<name>.safetensors`` and ``<name>.json`` for `atomic_write_files`."""
    directory = Path(directory)
    meta = dict(metadata)
    meta.update(
        format_version=FORMAT_VERSION,
        timesteps=approx.T,
        neurons=approx.neurons,
        symmetry=approx.symmetry,
        target=meta.get("target", approx.name),
    )
    tensors = _tensors(approx)
    text = json.dumps(_json_safe(meta), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return [
        (
            directory / f"{name}.safetensors",
            lambda p: save_file(tensors, str(p), metadata={"format": "bt-neurons-approximator"}),
        ),
        (directory / f"{name}.json", lambda p: p.write_text(text)),
    ]


def save_approximator(approx, directory: str | os.PathLike, name: str, metadata: dict) -> tuple[Path, Path]:
    """Write ``<name>.safetensors`` and ``<name>.json`` into ``directory`` atomically.

    Args:
        approx (NeuronArrayApproximator): the approximator to save.
        directory: destination folder (created if missing).
        name: file stem.
        metadata: JSON-serialisable facts to record (target, errors, seed, ...).

    Returns:
        The two paths.
    """
    st, js = atomic_write_files(approximator_writers(approx, directory, name, metadata))
    return st, js


def read_approximator_files(stem: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``<stem>.safetensors`` and ``<stem>.json`` and check them.

    Raises:
        FileNotFoundError: if either file is missing.
        ValueError: if either file is corrupt or not a bt-neurons approximator.
    """
    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (st, js):
        if not p.is_file():
            raise FileNotFoundError(f"approximator file not found: {p}")
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{js} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or any(k not in meta for k in _REQUIRED):
        raise ValueError(f"{js} is not a bt-neurons approximator description (needs keys {list(_REQUIRED)})")
    if meta["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"{js} has format_version {meta['format_version']}, this bt-neurons reads {FORMAT_VERSION}"
        )
    try:
        tensors = load_file(str(st))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{st} is not a valid safetensors file: {exc}") from None
    missing = [k for k in _TENSORS if k not in tensors]
    if missing:
        raise ValueError(f"{st} lacks the tensors {missing}")
    return tensors, meta
