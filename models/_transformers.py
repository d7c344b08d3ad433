"""Import Hugging Face transformers safely.

spikingjelly 2.0 requires torchvision and torchaudio. The wheels that fit the
pinned torch can fail to load their C operators (``operator torchvision::nms
does not exist`` with torch 2.13.0+cpu), and transformers imports them
whenever they are installed, which then breaks ``import transformers``. A
package that cannot be imported is marked absent (``sys.modules[name] =
None``), which transformers understands as "not installed"; a working one is
left alone.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["hide_broken_optional_imports"]

_OPTIONAL = ("torchvision", "torchaudio")


def hide_broken_optional_imports() -> None:
    """Mark torchvision / torchaudio absent when importing them raises."""
    for name in _OPTIONAL:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # a broken binary extension raises RuntimeError, OSError, ImportError...
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[loaded]
            sys.modules[name] = None  # type: ignore[assignment]


hide_broken_optional_imports()
