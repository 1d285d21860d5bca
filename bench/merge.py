"""Merges and diffs: PEFT 0.21's ``add_weighted_adapter`` next to ``registry.compute.merge``, same inputs.

    python bench/merge.py [--hidden 2048] [--layers 1] [--adapters 4] [--rank 16] [--device cpu|cuda]
                          [--cases svd,ties_svd,cat,diff]     (--cases diff: only the diff row, in seconds)

Builds a Llama of hidden size H (``intermediate = 2.6875·H``, all 7 linear modules per layer adapted;
its weights are never initialised: meta device, then ``to_empty``) and N random LoRA adapters of rank r,
saved as PEFT directories. Each (implementation, method) case runs in its own subprocess: load the
adapters (PEFT: into one PeftModel; ours: ``load_adapter``), then time ONE merge call. Peak memory is
what that call adds: on CPU the peak resident set size during the call minus the RSS before it
(Linux ``/proc/self/clear_refs`` resets the peak; without it, ``ru_maxrss`` after minus RSS before),
on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before it.

Errors are relative Frobenius errors per module (the worst module printed) against the exact answer:
for ``svd`` and ``cat`` the exact Σ wᵢ·sᵢ·BᵢAᵢ (through QR cores, never dense); for ``ties_svd`` the
dense TIES merge before truncation. "agree" is the worst per-module difference between PEFT's and our
merged ΔW. The diff row times ``diff.adapter_diff`` on the first two adapters (per module ‖ΔW₁‖, ‖ΔW₂‖,
⟨ΔW₁, ΔW₂⟩, cosine and ‖ΔW₁−ΔW₂‖ from one stacked fp64 Gram pair: ``lowrank.compare`` on
``lowrank.pair_statistics``) against forming both ΔW and taking ‖ΔW₁−ΔW₂‖ and the cosine.
Targets: svd ≥ 100× faster than PEFT with error ≤ PEFT's; ties_svd no slower than PEFT with peak
memory ≤ PEFT's; the Gram diff ≥ 100× faster than dense.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from registry.compute.diff import adapter_diff
from registry.compute.lora import LoraAdapter, LoraModule, load_adapter, save_adapter
from registry.compute.lowrank import difference_norm, frobenius_inner
from registry.compute.merge import merge_adapters

MODULES = {
    "self_attn.q_proj": ("h", "h"),
    "self_attn.k_proj": ("h", "h"),
    "self_attn.v_proj": ("h", "h"),
    "self_attn.o_proj": ("h", "h"),
    "mlp.gate_proj": ("i", "h"),
    "mlp.up_proj": ("i", "h"),
    "mlp.down_proj": ("h", "i"),
}
METHODS = ("svd", "ties_svd", "cat")
CASES = (*METHODS, "diff")
OPTIONS = {"svd": {}, "ties_svd": {"density": 0.5}, "cat": {}}
WEIGHTS = (0.6, -0.3, 0.9, 0.4, 0.7, -0.5, 0.2, 0.8)
REPEAT, REPEAT_BELOW_S = 3, 5.0  # runs per case while the runs so far took under 5 s: best time kept
DIFF_REPEAT = 5  # timed runs of each diff way (after one warm-up), best kept: a 2 ms run is easily preempted


def intermediate(hidden: int) -> int:
    return round(2.6875 * hidden / 64) * 64


def make_adapters(work: Path, hidden: int, layers: int, count: int, rank: int) -> list[Path]:
    """``count`` PEFT adapter directories with random A (r×in, ~1/√in) and B (out×r, ~0.01)."""
    sizes = {"h": hidden, "i": intermediate(hidden)}
    dirs = []
    for i in range(count):
        generator = torch.Generator().manual_seed(1000 + i)
        modules = {}
        for layer in range(layers):
            for name, (out, inp) in MODULES.items():
                d_out, d_in = sizes[out], sizes[inp]
                A = torch.randn(rank, d_in, generator=generator) / d_in**0.5
                B = torch.randn(d_out, rank, generator=generator) * 0.01
                modules[f"model.layers.{layer}.{name}"] = LoraModule(A=A, B=B, scale=2.0)
        config = {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": rank,
            "lora_alpha": 2 * rank,
            "target_modules": sorted(name.split(".")[1] for name in MODULES),
            "base_model_name_or_path": "bench-llama",
            "bias": "none",
        }
        path = work / f"adapter-{i}"
        save_adapter(path, LoraAdapter(modules=modules, config=config))
        dirs.append(path)
    return dirs


def empty_llama(hidden: int, layers: int, device: str):
    """A Llama whose weights are allocated but never written (so never resident on CPU)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate(hidden),
        num_hidden_layers=layers,
        num_attention_heads=hidden // 128,
        num_key_value_heads=hidden // 128,
        vocab_size=256,
        max_position_embeddings=128,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    return model.to_empty(device=device).eval()


# One case in a subprocess --------------------------------------------------------------------------------


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class PeakMemory:
    """Bytes a block adds at its peak: CUDA allocator peak, or CPU peak RSS over the RSS before."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.before = torch.cuda.memory_allocated()
            return self
        self.before = _rss_kib("VmRSS") * 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.hwm = True
        except OSError:
            self.hwm = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.before
        elif self.hwm:
            self.peak = _rss_kib("VmHWM") * 1024 - self.before
        else:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.before


def run_case(impl: str, method: str, dirs: list[Path], args: argparse.Namespace, out: Path) -> None:
    """Time one merge call (repeated while each run is short: the best time is kept; the peak memory
    and the factors come from the first run)."""
    weights = list(WEIGHTS[: len(dirs)])
    factors: dict[str, torch.Tensor] = {}
    cuda = args.device.startswith("cuda")
    if impl == "peft":
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        model = PeftModel.from_pretrained(
            empty_llama(args.hidden, args.layers, args.device), dirs[0], adapter_name="a0"
        )
        for i, directory in enumerate(dirs[1:], 1):
            model.load_adapter(directory, adapter_name=f"a{i}")
        names = [f"a{i}" for i in range(len(dirs))]

        def merge() -> None:
            model.add_weighted_adapter(names, weights, "merged", combination_type=method, **OPTIONS[method])
            if not factors:
                for key, module in model.base_model.model.named_modules():
                    if isinstance(module, LoraLayer) and "merged" in module.lora_A:
                        scale = module.scaling["merged"]
                        factors[f"{key}.B"] = (module.lora_B["merged"].weight.detach() * scale).float().cpu()
                        factors[f"{key}.A"] = module.lora_A["merged"].weight.detach().float().cpu()
            model.delete_adapter("merged")
    else:
        adapters = [load_adapter(directory) for directory in dirs]

        def merge() -> None:
            result = merge_adapters(adapters, weights, method, device=args.device, **OPTIONS[method])
            if not factors:
                for key, module in result.adapter.modules.items():
                    factors[f"{key}.B"] = module.B * module.scale
                    factors[f"{key}.A"] = module.A

    runs, peaks = [], []
    while len(runs) < REPEAT and sum(runs) < REPEAT_BELOW_S:
        with PeakMemory(args.device) as memory:
            start = time.perf_counter()
            merge()
            if cuda:
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - start)
        peaks.append(memory.peak)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in factors.items()}, str(out / f"{impl}-{method}.safetensors"))
    record = {"seconds": min(runs), "runs": len(runs), "peak": peaks[0]}
    (out / f"{impl}-{method}.json").write_text(json.dumps(record))


# The parent: run the cases, compare, print ---------------------------------------------------------------


def exact_factors(adapters: list[LoraAdapter], key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact Σ wᵢ·sᵢ·BᵢAᵢ as stacked factors."""
    B = torch.cat(
        [
            w * a.modules[key].scale * a.modules[key].B
            for w, a in zip(WEIGHTS[: len(adapters)], adapters, strict=True)
        ],
        dim=1,
    )
    return B, torch.cat([a.modules[key].A for a in adapters], dim=0)


def ties_reference(adapters: list[LoraAdapter], key: str) -> torch.Tensor:
    """The dense TIES merge before truncation (PEFT's ``ties`` on the ΔWᵢ), via merge's own combine."""
    from registry.compute.merge import _combine  # the bench's reference, not an API

    modules = [a.modules[key] for a in adapters]
    return _combine(
        "ties",
        [lambda m=m: m.delta() for m in modules],
        list(WEIGHTS[: len(adapters)]),
        OPTIONS["ties_svd"]["density"],
        "total",
        [],
    )


def errors(method: str, adapters: list[LoraAdapter], peft: dict, ours: dict) -> tuple[float, float, float]:
    """Worst per-module (PEFT error, our error, PEFT-vs-ours difference)."""
    worst = [0.0, 0.0, 0.0]
    for key in adapters[0].modules:
        results = [(f[f"{key}.B"].double(), f[f"{key}.A"].double()) for f in (peft, ours)]
        if method == "ties_svd":
            reference = ties_reference(adapters, key).double()
            norm = torch.linalg.matrix_norm(reference)
            errs = [float(torch.linalg.matrix_norm(reference - B @ A) / norm) for B, A in results]
        else:
            Bx, Ax = (t.double() for t in exact_factors(adapters, key))
            norm = frobenius_inner(Bx, Ax, Bx, Ax).sqrt()
            errs = [float(difference_norm(Bx, Ax, B, A) / norm) for B, A in results]
        (Bp, Ap), (Bo, Ao) = results
        agree = float(difference_norm(Bp, Ap, Bo, Ao) / frobenius_inner(Bp, Ap, Bp, Ap).sqrt())
        worst = [max(w, e) for w, e in zip(worst, [*errs, agree], strict=True)]
    return worst[0], worst[1], worst[2]


def diff_rows(adapters: list[LoraAdapter], device: str) -> dict[str, tuple[float, float]]:
    """{way: (best seconds of DIFF_REPEAT runs, worst error)} for ‖ΔW₁−ΔW₂‖ and cos(ΔW₁, ΔW₂) over every
    module of the first two adapters: ``dense`` (both ΔW formed in fp32, from factors with the scale
    already folded into B, outside the timing), and ``lowrank``: ``adapter_diff`` itself, i.e. per module
    ``lowrank.compare`` on the raw factors (one stacked fp64 Gram pair, QR core where the trace formula
    cancels) plus the registry's own bookkeeping. The error is the worst relative error of the distance or
    absolute error of the cosine against dense fp64."""
    first, second = (_on_device(adapter, device) for adapter in adapters[:2])
    keys = sorted(first.modules)  # adapter_diff's order
    pairs = []
    for key in keys:
        one, two = first.modules[key], second.modules[key]
        pairs.append([one.B * one.scale, one.A, two.B * two.scale, two.A])

    def dense(B1, A1, B2, A2) -> tuple[torch.Tensor, torch.Tensor]:
        W1, W2 = B1 @ A1, B2 @ A2
        norms = torch.linalg.matrix_norm(W1) * torch.linalg.matrix_norm(W2)
        return torch.linalg.matrix_norm(W1 - W2), torch.sum(W1 * W2) / norms

    def lowrank() -> list[tuple[float, float | None]]:
        diff = adapter_diff(first, second)
        return [(m.distance, m.cosine) for m in diff.modules]

    ways = {"dense": lambda: [dense(*pair) for pair in pairs], "lowrank": lowrank}

    def run(way) -> list[tuple[float, float]]:
        out = way()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return [(float(d), float(c)) for d, c in out]

    results = {}
    for name, way in ways.items():
        run(way)  # warm up
        runs = []
        for _ in range(DIFF_REPEAT):
            start = time.perf_counter()
            values = run(way)
            runs.append(time.perf_counter() - start)
        results[name] = (min(runs), values)
    reference = [
        (float(d), float(c)) for d, c in (dense(*(t.double() for t in pair)) for pair in pairs)
    ]  # fp64: an fp32 norm over millions of entries is itself only ~1e-4 exact
    return {
        name: (
            seconds,
            max(
                max(abs(v[0] - r[0]) / r[0], abs(v[1] - r[1])) for v, r in zip(values, reference, strict=True)
            ),
        )
        for name, (seconds, values) in results.items()
    }


def _on_device(adapter: LoraAdapter, device: str) -> LoraAdapter:
    modules = {
        name: dataclasses.replace(m, A=m.A.to(device), B=m.B.to(device))
        for name, m in adapter.modules.items()
    }
    return LoraAdapter(modules=modules, config=adapter.config)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--hidden", type=int, help="hidden size (default 2048 on CPU, 4096 on CUDA)")
    parser.add_argument("--layers", type=int, default=1, help="decoder layers (7 adapted modules each)")
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument(
        "--cases",
        help=f"comma-separated cases to run, from {','.join(CASES)} (default: all); "
        "'--cases diff' runs the diff row alone, without PEFT or a model",
    )
    parser.add_argument(
        "--methods", help="merge methods only, the diff row always runs (older spelling of --cases)"
    )
    parser.add_argument("--case", nargs=3, metavar=("IMPL", "METHOD", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.hidden = args.hidden or (4096 if args.device.startswith("cuda") else 2048)
    if not 2 <= args.adapters <= len(WEIGHTS):
        parser.error(f"--adapters must be between 2 and {len(WEIGHTS)}")
    if args.cases and args.methods:
        parser.error("give --cases or --methods, not both")
    cases = args.cases.split(",") if args.cases else [*(args.methods or ",".join(METHODS)).split(","), "diff"]
    allowed = CASES if args.cases else (*METHODS, "diff")
    unknown = [c for c in cases if c not in allowed]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(allowed)}")

    if args.case:
        impl, method, work = args.case
        dirs = sorted(Path(work).glob("adapter-*"))
        run_case(impl, method, dirs, args, Path(work))
        return

    threads = torch.get_num_threads()
    print(
        f"hidden {args.hidden}, intermediate {intermediate(args.hidden)}, "
        f"{args.layers} layer(s) × 7 modules, "
        f"{args.adapters} adapters × r{args.rank}, device {args.device}"
        + (f" ({threads} threads)" if args.device == "cpu" else f" ({torch.cuda.get_device_name()})")
    )
    print(
        "peak = what the merge call adds: "
        + ("CUDA max_memory_allocated" if args.device.startswith("cuda") else "peak RSS minus RSS before")
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dirs = make_adapters(work, args.hidden, args.layers, args.adapters, args.rank)
        adapters = [load_adapter(d) for d in dirs]
        header = (
            f"{'case':<34} {'PEFT':>9} {'ours':>9} {'PEFT/ours':>10} {'PEFT peak':>11} {'ours peak':>11} "
            f"{'PEFT err':>11} {'ours err':>11} {'agree':>8}  target"
        )
        print(header)
        print("-" * len(header))
        for method in (c for c in cases if c in METHODS):
            measured = {}
            for impl in ("peft", "ours"):
                command = [sys.executable, __file__, "--device", args.device, "--hidden", str(args.hidden)]
                command += ["--layers", str(args.layers), "--case", impl, method, str(work)]
                subprocess.run(command, check=True)
                measured[impl] = json.loads((work / f"{impl}-{method}.json").read_text())
            from safetensors.torch import load_file

            peft_err, our_err, agree = errors(
                method,
                adapters,
                load_file(work / f"peft-{method}.safetensors"),
                load_file(work / f"ours-{method}.safetensors"),
            )
            peft_s, our_s = measured["peft"]["seconds"], measured["ours"]["seconds"]
            ratio = peft_s / our_s
            if method == "svd":
                ok = ratio >= 100 and our_err <= peft_err * (1 + 1e-5) + 1e-7
                target = f"≥100×, err ≤ PEFT: {'met' if ok else 'MISSED'}"
            elif method == "ties_svd":
                ok = ratio >= 1 and measured["ours"]["peak"] <= measured["peft"]["peak"]
                target = f"≥1×, peak ≤ PEFT: {'met' if ok else 'MISSED'}"
            else:
                target = "exact"
            label = f"{method} ({args.adapters}×r{args.rank}, {7 * args.layers} modules)"
            print(
                f"{label:<34} {peft_s:>8.3f}s {our_s:>8.3f}s {ratio:>9.1f}× "
                f"{mib(measured['peft']['peak']):>11} {mib(measured['ours']['peak']):>11} "
                f"{peft_err:>11.4e} {our_err:>11.4e} {agree:>8.1e}  {target}"
            )
        if "diff" not in cases:
            return
        diffs = diff_rows(adapters, args.device)
        dense_s = diffs["dense"][0]
        for name, label in (("lowrank", "adapter diff (Gram) vs dense"),):
            seconds, worst = diffs[name]
            ratio = dense_s / seconds
            verdict = "met" if ratio >= 100 else "MISSED"
            print(
                f"{label:<34} {dense_s:>8.3f}s {seconds:>8.5f}s {ratio:>9.1f}× {'':>11} {'':>11} "
                f"{diffs['dense'][1]:>11.1e} {worst:>11.1e} {'':>8}  ≥100×: {verdict}"
            )
        print(
            "diff row: 'PEFT' = both ΔW formed densely (fp32), 'ours' = adapter_diff (one fp64 Gram pair per "
            f"module); best of {DIFF_REPEAT} runs each; errors against dense fp64"
        )


if __name__ == "__main__":
    main()
