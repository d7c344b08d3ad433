"""Writing a model folder so that it is always whole: what every model family's training shares."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from bt_neurons._atomic_writes import atomic_write_files

__all__ = ["save_model_and_tokenizer"]


def save_model_and_tokenizer(model: Any, tokenizer: Any, out: Path) -> None:
    """Save ``model`` and ``tokenizer`` side by side in ``out``: every file or none (config.json included).

    Both are saved into a temporary folder inside ``out`` first, then moved into
    place together by `bt_neurons._atomic_writes.atomic_write_files`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".final.", dir=out) as tmp:
        staging = Path(tmp)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        names = sorted(p.name for p in staging.iterdir() if p.is_file())
        atomic_write_files(
            (out / name, lambda dest, src=staging / name: shutil.copyfile(src, dest)) for name in names
        )
