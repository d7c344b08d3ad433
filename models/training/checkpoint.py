"""Training checkpoints: one safetensors file, written atomically, loaded without unpickling.

The file holds the model's state dict (tensors shared between names, such as
tied embeddings, stored once), the optimiser's tensors, and as JSON in the
safetensors metadata: the optimiser's other state and parameter groups, the
stage-3 learner's state (steps, coefficients, loss baseline) and whatever
the caller adds (stage, step, losses). It is written to a temporary file in
the same folder and renamed into place, so an interrupted save leaves the
previous checkpoint intact; loading checks every name and shape before
anything is changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from bt_neurons.approximators.storage import atomic_write_files
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .learner import StageThreeLearner

__all__ = ["load_checkpoint", "save_checkpoint"]

_FORMAT = "bt-neurons-training-checkpoint/1"


def _dedupe(state: dict[str, Tensor], prefix: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    tensors, aliases, seen = {}, {}, {}
    for name, t in state.items():
        key = (t.data_ptr(), tuple(t.shape), t.dtype, tuple(t.stride())) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        tensors[prefix + name] = t.detach().contiguous().cpu()
    return tensors, aliases


def _optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, other = {}, {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer/{pid}/{key}"] = value.detach().contiguous().cpu()
            else:
                other.setdefault(str(pid), {})[key] = value
    return tensors, {"state": other, "param_groups": sd["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    learner: StageThreeLearner | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` (and ``optimizer``, ``learner``, ``info``) to the file ``path`` atomically.

    ``info`` must be JSON-serialisable (e.g. ``{"stage": 3, "step": 120}``).
    Returns the path.
    """
    path = Path(path)
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"path must be a file, but {str(path)!r} is a folder")
    tensors, aliases = _dedupe(model.state_dict(), "model/")
    meta: dict[str, Any] = {"format": _FORMAT, "aliases": aliases, "info": info or {}}
    if optimizer is not None:
        opt_tensors, meta["optimizer"] = _optimizer_parts(optimizer)
        tensors.update(opt_tensors)
    if learner is not None:
        meta["learner"] = learner.state_dict()
    try:
        metadata = {"bt_neurons": json.dumps(meta, allow_nan=False)}
    except (TypeError, ValueError) as e:
        raise ValueError(f"info must be JSON-serialisable with finite numbers: {e}") from None
    atomic_write_files([(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))])
    return path


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    learner: StageThreeLearner | None = None,
) -> dict[str, Any]:
    """Load a `save_checkpoint` file into ``model`` (and ``optimizer``, ``learner``); returns its ``info``.

    Raises:
        FileNotFoundError, ValueError: a missing, corrupt or mismatched file;
            nothing is changed then.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("bt_neurons", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(path)!r} is not a readable checkpoint: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{str(path)!r} is not a bt-neurons training checkpoint")
    state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    for name, source in meta["aliases"].items():
        if source not in state:
            raise ValueError(f"{str(path)!r} is corrupt: {name} aliases the missing {source}")
        state[name] = state[source]
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise ValueError(
            f"the checkpoint does not fit this model: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    for name, t in expected.items():
        if state[name].shape != t.shape:
            raise ValueError(
                f"the checkpoint does not fit this model: {name} has shape {tuple(state[name].shape)}, "
                f"the model {tuple(t.shape)}"
            )
    opt_state = None
    if optimizer is not None:
        if "optimizer" not in meta:
            raise ValueError(f"{str(path)!r} holds no optimizer state")
        entries: dict[int, dict] = {int(k): dict(v) for k, v in meta["optimizer"]["state"].items()}
        for key, t in tensors.items():
            if key.startswith("optimizer/"):
                _, pid, name = key.split("/", 2)
                entries.setdefault(int(pid), {})[name] = t
        opt_state = {"state": entries, "param_groups": meta["optimizer"]["param_groups"]}
        groups = optimizer.state_dict()["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in opt_state["param_groups"]]:
            raise ValueError("the checkpoint's optimizer state does not fit this optimizer's parameters")
    if learner is not None and "learner" not in meta:
        raise ValueError(f"{str(path)!r} holds no stage-3 learner state")
    model.load_state_dict(state, strict=True)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    if learner is not None:
        learner.load_state_dict(meta["learner"])
    return meta["info"]
