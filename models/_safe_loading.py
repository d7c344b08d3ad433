"""``from_pretrained`` for the model families: safetensors only, and every loaded weight finite."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["SafetensorsOnlyMixin"]


class SafetensorsOnlyMixin:
    """Put before ``transformers.PreTrainedModel`` in the bases: its ``from_pretrained`` loads safely."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, **kwargs: Any) -> Any:
        """transformers' ``from_pretrained``, from safetensors only, every loaded weight checked finite.

        Raises:
            ValueError: ``use_safetensors=False`` (a pickle is never opened), or a weight holding NaN / Inf.
        """
        if kwargs.get("use_safetensors") is False:
            raise ValueError(
                "use_safetensors=False would unpickle the weights: bt-neurons loads safetensors only"
            )
        kwargs["use_safetensors"] = True
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        for name, tensor in (*model.named_parameters(), *model.named_buffers()):
            if (
                tensor.is_floating_point()
                and tensor.device.type != "meta"
                and not torch.isfinite(tensor).all()
            ):
                raise ValueError(f"{pretrained_model_name_or_path}: the weight {name} has NaN or Inf values")
        return loaded
