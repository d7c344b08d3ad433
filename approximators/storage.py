"""Saving and loading approximators: safetensors for the tensors, JSON for the metadata.

Files are written atomically (to a temporary file in the same folder, then
renamed), so an interrupted write never leaves a half-written file; loading
never unpickles anything (safetensors and JSON only).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bt_neurons import _checks
from bt_neurons._atomic_writes import atomic_write_files  # re-exported: the writer of every saved result

__all__ = [
    "FORMAT_VERSION",
    "atomic_write_files",
    "approximator_writers",
    "save_approximator",
    "read_approximator_files",
]

FORMAT_VERSION = 1
_TENSORS = ("edges", "thresholds", "amplitudes", "left_tail", "right_tail")
_OPTIONAL_TENSORS = ("bias",)  # files written before binary coding have none (zeros)
_REQUIRED = ("format_version", "target", "timesteps", "symmetry")


def _tensors(approx) -> dict[str, torch.Tensor]:
    names = _TENSORS + _OPTIONAL_TENSORS
    tensors = {name: getattr(approx, name).detach().to(torch.float32).cpu().contiguous() for name in names}
    for name, t in tensors.items():  # a file that would not load again is not written
        _checks.check_finite(f"the approximator's {name}", t)
    return tensors


def _check_stem(name: object) -> str:
    """``name`` must be a plain file stem, so that the files land in the folder they are saved to."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a file stem), got {type(name).__name__}")
    if not name or name in (".", "..") or any(c in name for c in ("/", "\\", "\x00")):
        raise ValueError(f"name must be a plain file name without folders (e.g. 'silu'), got {name!r}")
    return name


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
    """``(path, writer)`` pairs of ``<name>.safetensors`` and ``<name>.json`` for `atomic_write_files`.

    Raises:
        ValueError: ``name`` is not a plain file name, or a tensor of ``approx`` is not finite.
    """
    _check_stem(name)
    directory = Path(directory)
    meta = dict(metadata)
    meta.update(
        format_version=FORMAT_VERSION,
        timesteps=approx.T,
        neurons=approx.neurons,
        symmetry=approx.symmetry,
        coding=approx.coding,
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

    Raises:
        ValueError: a bad ``name``, or an approximator that is not finite (nothing is written).
        IsADirectoryError: a folder is in the way of one of the files.
    """
    st, js = atomic_write_files(approximator_writers(approx, directory, name, metadata))
    return st, js


def _check_contents(st: Path, js: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Every field and tensor an approximator is built from: types, shapes, finiteness (before building)."""
    from .neuron_array import SYMMETRIES

    T = meta["timesteps"]
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= 64:
        raise ValueError(f'{js}: "timesteps" must be an int in [1, 64], got {T!r}')
    if meta["symmetry"] not in SYMMETRIES:
        raise ValueError(f'{js}: "symmetry" must be one of {list(SYMMETRIES)}, got {meta["symmetry"]!r}')
    from .neuron_array import CODINGS

    if meta.get("coding", "level") not in CODINGS:
        raise ValueError(f'{js}: "coding" must be one of {list(CODINGS)}, got {meta.get("coding")!r}')
    if not isinstance(meta["target"], str):
        raise ValueError(f'{js}: "target" must be a string, got {meta["target"]!r}')
    for name in _TENSORS + tuple(n for n in _OPTIONAL_TENSORS if n in tensors):
        t = tensors[name]
        if not t.is_floating_point():
            raise ValueError(f"{st}: the tensor {name!r} must be floating-point, got {t.dtype}")
        try:
            _checks.check_finite(f"the tensor {name!r}", t)
        except ValueError as exc:
            raise ValueError(f"{st}: {exc}") from None
    edges = tensors["edges"]
    if edges.dim() != 1 or len(edges) < 2 or not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError(
            f"{st}: the tensor 'edges' must be strictly increasing and 1-D with at least 2 values, "
            f"got shape {tuple(edges.shape)}"
        )
    P = len(edges) - 1
    neurons = meta.get("neurons", P)
    if neurons != P:
        raise ValueError(f'{js}: "neurons" is {neurons!r} but {st} has edges for {P} neurons')
    expected = {"thresholds": (P, T), "amplitudes": (P, T), "left_tail": (2,), "right_tail": (2,)}
    if "bias" in tensors:
        expected["bias"] = (P,)
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(
                f"{st}: the tensor {name!r} must have shape {list(shape)} (P = {P} neurons, "
                f"T = {T} steps), got {list(tensors[name].shape)}"
            )


def read_approximator_files(stem: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``<stem>.safetensors`` and ``<stem>.json`` and check them.

    Everything an approximator is built from is checked before anything is
    built: the JSON fields' types and values, every tensor's dtype, shape
    (``edges`` ``[P + 1]``, ``thresholds`` and ``amplitudes`` ``[P, T]``, the
    tails ``[2]``) and finiteness.

    Raises:
        FileNotFoundError: if either file is missing.
        ValueError: if either file is corrupt, not a bt-neurons approximator, or
            holds a field or tensor that is not what it must be (named in the message).
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
    _check_contents(st, js, tensors, meta)
    return tensors, meta
