"""What changes between the transformers releases the package accepts, in one place.

The KV cache reaches a model's ``forward`` as ``past_key_values`` (transformers
5.0 to 5.23) or as ``cache`` (5.24 and newer, which still accept the old name
with a deprecation warning), and the output classes name the field the same
way. The model classes take both names (`cache_argument`) and build their
outputs with the field name of the installed release (`with_cache`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bt_neurons import _optional_imports  # noqa: F401  (a broken torchvision reads as absent)

__all__ = ["CACHE_ARGUMENT_NAMES", "cache_argument", "cache_field", "with_cache"]

#: The names under which transformers' ``generate()`` has passed the KV cache, newest first.
CACHE_ARGUMENT_NAMES = ("cache", "past_key_values")


def cache_argument(cache: Any, past_key_values: Any) -> Any:
    """The KV cache a caller passed under either name (None when neither was given).

    Raises:
        ValueError: both names were given different objects.
    """
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("pass the KV cache as cache or as past_key_values, not both")
    return cache if cache is not None else past_key_values


def cache_field(output_class: type) -> str:
    """The name of the KV-cache field of a transformers output dataclass in the installed release."""
    names = {f.name for f in dataclasses.fields(output_class)}
    for name in CACHE_ARGUMENT_NAMES:
        if name in names:
            return name
    raise TypeError(f"{output_class.__name__} has no KV-cache field (looked for {CACHE_ARGUMENT_NAMES})")


def with_cache(output_class: type, cache: Any, **fields: Any) -> Any:
    """``output_class(**fields)`` with ``cache`` stored under the installed release's field name."""
    return output_class(**fields, **{cache_field(output_class): cache})
