"""Keep broken optional packages from breaking the import of the packages that probe them.

SpikingJelly 2.0 requires torchvision and torchaudio. On a machine whose torch
is a CPU build, PyPI's torchvision wheel (a CUDA build) cannot load its C
operators (``RuntimeError: operator torchvision::nms does not exist``), and
Hugging Face transformers imports torchvision whenever it is installed, so
``from transformers import ...`` then fails. A package that cannot be imported
is marked absent (``sys.modules[name] = None``), which transformers (and
``importlib.util.find_spec``) read as "not installed"; a working one is left
alone. Importing this module (which ``import bt_neurons`` does first) runs the
check, so ``import bt_neurons`` before ``transformers`` is enough.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["OPTIONAL_PACKAGES", "hide_broken_optional_imports"]

#: Packages that are installed as SpikingJelly's requirements but that nothing here needs.
OPTIONAL_PACKAGES = ("torchvision", "torchaudio")


def hide_broken_optional_imports(names: tuple[str, ...] = OPTIONAL_PACKAGES) -> list[str]:
    """Mark each package of ``names`` absent when importing it raises; returns the names marked.

    A package already imported (or already marked absent) is not touched.
    """
    hidden = []
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # a broken binary extension raises RuntimeError, OSError, ImportError...
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[loaded]
            sys.modules[name] = None  # type: ignore[assignment]
            hidden.append(name)
    return hidden


hide_broken_optional_imports()
