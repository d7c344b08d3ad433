"""The checks `BTSpikingForCausalLM.from_pretrained` runs on a saved model folder.

Before transformers reads anything (so that a broken folder is refused with a
message that names the file, the field or the tensor, and nothing is
unpickled): ``config.json`` is a JSON object of a ``bt_spiking`` model whose
fields have valid types and values; the weights are safetensors files
(a ``pytorch_model.bin`` or other pickle is refused, never opened), their
headers are complete, and they hold exactly the tensors the config implies,
with the shapes it implies. After loading: every weight is finite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from torch import nn

from bt_neurons import _checks

from .configuration import BTSpikingConfig

__all__ = ["check_finite_weights", "check_model_folder", "read_config_file"]

#: Files transformers would unpickle (``torch.load``); bt-neurons never opens them.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_SAFETENSORS_DTYPES = {"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"}


def read_config_file(folder: Path) -> BTSpikingConfig:
    """The `BTSpikingConfig` of ``folder/config.json``; every error names the file (and the field).

    Raises:
        FileNotFoundError: there is no config.json.
        ValueError: it is not JSON, not an object, not a bt_spiking model, or a field is invalid.
    """
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no config.json: it is not a model folder written by save_pretrained or "
            "bt-convert (pass config= to load weights with a config of your own)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{str(path)!r} must hold a JSON object of config fields, got a {type(data).__name__}"
        )
    kind = data.get("model_type", BTSpikingConfig.model_type)
    if kind != BTSpikingConfig.model_type:
        raise ValueError(
            f"{str(path)!r} has model_type {kind!r}, not {BTSpikingConfig.model_type!r}: it is not a "
            "bt-neurons spiking model (convert a Llama / Qwen2 checkpoint with bt-convert first)"
        )
    try:
        return BTSpikingConfig.from_dict(data)
    except StrictDataclassError as exc:  # a validator of the config: its own error names the field
        raise ValueError(f"{str(path)!r}: {exc.__cause__ or exc}") from None
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{str(path)!r}: {exc}") from None


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files of ``folder`` (one, or the shards its index names)."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{str(index)!r} is not a valid safetensors index ({exc!r})") from None
        if not shards or not all(isinstance(s, str) and os.path.basename(s) == s for s in shards):
            raise ValueError(f"{str(index)!r} must map tensor names to shard files in its folder")
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{str(index)!r} names shard files that are missing: {missing[:3]}")
        return [folder / s for s in shards]
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{str(folder)!r} holds its weights as {pickles[0]}, a pickle file: bt-neurons never unpickles "
            "a file it is handed (save the model with safetensors: save_pretrained does by default)"
        )
    raise FileNotFoundError(f"{str(folder)!r} has no model.safetensors (the weights)")


def _header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{tensor name: (shape, safetensors dtype)}`` read from the header (no tensor data is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is not a complete safetensors file ({exc})") from None


def check_model_folder(cls: type[nn.Module], folder: Path, config: BTSpikingConfig) -> None:
    """Refuse weights ``cls(config)`` could not load exactly: pickles, broken files, missing or extra
    tensors, wrong shapes or dtypes. Reads only the files' headers."""
    files = _weight_files(folder)
    found: dict[str, tuple[tuple[int, ...], str, Path]] = {}
    for path in files:
        for name, (shape, dtype) in _header(path).items():
            found[name] = (shape, dtype, path)
    with torch.device("meta"):  # the shapes the config implies, without allocating them
        state = cls(config).state_dict()
    expected = {k: tuple(v.shape) for k, v in state.items()}
    config_file = str(folder / "config.json")
    optional = {"lm_head.layer.weight"} if config.tie_word_embeddings else set()
    missing = sorted(set(expected) - set(found) - optional)
    if missing:
        raise ValueError(
            f"{str(files[0])!r} lacks {len(missing)} tensor(s) the model of {config_file!r} needs, "
            f"e.g. {missing[0]!r}: the file is incomplete or belongs to another model"
        )
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise ValueError(
            f"{str(found[unexpected[0]][2])!r} holds tensor(s) the model of {config_file!r} does not have, "
            f"e.g. {unexpected[0]!r}: the file belongs to another model"
        )
    for name, shape in expected.items():
        if name not in found:
            continue
        got, dtype, path = found[name]
        if got != shape:
            raise ValueError(
                f"{str(path)!r}: tensor {name!r} has shape {got}, but {config_file!r} implies {shape}"
            )
        if state[name].is_floating_point() and dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{str(path)!r}: tensor {name!r} has dtype {dtype}, expected a floating dtype")


def check_finite_weights(model: nn.Module, where: str) -> None:
    """Raise ``ValueError`` naming the first parameter or buffer of ``model`` that holds NaN or Inf."""
    for name, t in model.state_dict().items():
        if t.is_floating_point():
            _checks.check_finite(f"tensor {name!r} of {where}", t)
