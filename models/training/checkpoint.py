"""Training checkpoints: one safetensors file, written atomically, loaded without unpickling.

The file holds the model's state dict (tensors shared between names, such as
tied embeddings, stored once), the optimiser's tensors, and as JSON in the
safetensors metadata: the optimiser's other state and parameter groups, the
stage-3 learner's state (steps, coefficients, loss baseline) and whatever
the caller adds (stage, step, losses). It is written to a temporary file in
the same folder and renamed into place, so an interrupted save leaves the
previous checkpoint intact, and a model whose weights are no longer finite
(a diverged run) is not saved over it. Loading checks everything (names,
shapes, finiteness, the optimiser's and the learner's state, the metadata)
before anything is changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from bt_neurons import _checks
from bt_neurons._atomic_writes import atomic_write_files

from .learner import StageThreeLearner, parse_learner_state

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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if info is not None and not isinstance(info, dict):
        raise TypeError(f"info must be a dict (e.g. {{'step': 120}}) or None, got {type(info).__name__}")
    for name, t in model.state_dict().items():  # a diverged run must not replace a good checkpoint
        if t.is_floating_point():
            _checks.check_finite(f"model tensor {name!r} (not saved, {str(path)!r} is unchanged)", t)
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


def _parameter_id(where: str, text: object) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where} is corrupt: {text!r} is not an optimizer parameter id") from None


def _optimizer_state(where: str, meta: dict, tensors: dict[str, Tensor], optimizer) -> dict:
    """The checkpoint's optimiser state for ``optimizer``, checked against its parameters (no change)."""
    part = meta.get("optimizer")
    if not isinstance(part, dict):
        raise ValueError(f"{where} holds no optimizer state")
    groups, saved = part.get("param_groups"), part.get("state")
    if not (
        isinstance(groups, list)
        and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
        and isinstance(saved, dict)
        and all(isinstance(v, dict) for v in saved.values())
    ):
        raise ValueError(f"{where} is corrupt: its optimizer state is not a torch optimizer state dict")
    entries: dict[int, dict] = {_parameter_id(where, k): dict(v) for k, v in saved.items()}
    for key, t in tensors.items():
        if key.startswith("optimizer/"):
            _, pid, name = (key.split("/", 2) + ["", ""])[:3]
            _checks.check_finite(f"optimizer tensor {key!r} of {where}", t)
            entries.setdefault(_parameter_id(where, pid), {})[name] = t
    current = optimizer.param_groups
    if [len(g["params"]) for g in current] != [len(g["params"]) for g in groups]:
        raise ValueError("the checkpoint's optimizer state does not fit this optimizer's parameters")
    saved_ids = [pid for g in groups for pid in g["params"]]
    params = dict(zip(saved_ids, [p for g in current for p in g["params"]], strict=True))
    for pid, entry in entries.items():
        if pid not in params:
            raise ValueError(f"{where} is corrupt: optimizer state for parameter {pid}, which no group holds")
        for name, value in entry.items():
            if isinstance(value, Tensor) and value.dim() and value.shape != params[pid].shape:
                raise ValueError(
                    f"the checkpoint's optimizer state does not fit this optimizer's parameters: {name} of "
                    f"parameter {pid} has shape {tuple(value.shape)}, the parameter "
                    f"{tuple(params[pid].shape)}"
                )
    return {"state": entries, "param_groups": groups}


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    learner: StageThreeLearner | None = None,
) -> dict[str, Any]:
    """Load a `save_checkpoint` file into ``model`` (and ``optimizer``, ``learner``); returns its ``info``.

    Everything is checked first (the metadata, every name, shape and value of
    the weights, the optimiser's and the learner's state); ``model``,
    ``optimizer`` and ``learner`` change only once all of it fits.

    Raises:
        FileNotFoundError, ValueError: a missing, corrupt or mismatched file;
            nothing is changed then.
    """
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {where}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("bt_neurons", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{where} is not a readable checkpoint: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError(f"{where} is not a bt-neurons training checkpoint")
    for field, kind in (("info", dict), ("aliases", dict)):
        if not isinstance(meta.get(field), kind):
            raise ValueError(f"{where} is corrupt: its metadata lacks the {field!r} object")
    try:
        state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
        for name, source in meta["aliases"].items():
            if source not in state:
                raise ValueError(f"{where} is corrupt: {name} aliases the missing {source}")
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
            if state[name].is_floating_point():
                _checks.check_finite(f"model tensor {name!r} of {where}", state[name])
        opt_state = _optimizer_state(where, meta, tensors, optimizer) if optimizer is not None else None
        restored = None
        if learner is not None:
            if "learner" not in meta:
                raise ValueError(f"{where} holds no stage-3 learner state")
            restored = parse_learner_state(meta["learner"], f"the stage-3 learner state of {where}")
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{where} is corrupt: {type(e).__name__}: {e}") from None
    # everything fits: only now change what we were given
    model.load_state_dict(state, strict=True)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    if restored is not None:
        learner.config, learner.modulation, learner.steps = restored
    return meta["info"]
