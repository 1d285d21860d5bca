"""Merges and diffs: PEFT 0.21's ``add_weighted_adapter`` next to ``registry.compute.merge``, same inputs.

    python bench/merge.py [--hidden 2048] [--layers 1] [--adapters 4] [--rank 16] [--device cpu|cuda]
                          [--cases svd,ties_svd,dare_linear_svd,dare_ties_svd,magnitude_prune_svd,cat,diff]
                          (--cases diff: only the diff row, in seconds; the default runs every case)

Builds a Llama of hidden size H (``intermediate = 2.6875·H``, all 7 linear modules per layer adapted;
its weights are never initialised: meta device, then ``to_empty``) and N random LoRA adapters of rank r,
saved as PEFT directories. Each (implementation, method) case runs in its own subprocess: load the
adapters (PEFT: into one PeftModel; ours: ``load_adapter``), then time ONE merge call. Peak memory is
what that call adds: on CPU the peak resident set size during the call minus the RSS before it
(Linux ``/proc/self/clear_refs`` resets the peak; without it, ``ru_maxrss`` after minus RSS before),
on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before it.

Errors are relative Frobenius errors per module (the worst module printed) against the exact answer:
for ``svd`` and ``cat`` the exact Σ wᵢ·sᵢ·BᵢAᵢ (through QR cores, never dense); for the dense ``*_svd``
types the element-wise merge before truncation (DARE: the same masks for both, ours returned by PEFT's
``torch.bernoulli`` calls as tests/compute/test_merge.py does). "agree" is the worst per-module difference
between PEFT's and our merged ΔW. The diff row times ``diff.adapter_diff`` on the first two adapters (per
module ‖ΔW₁‖, ‖ΔW₂‖, ⟨ΔW₁, ΔW₂⟩, cosine and ‖ΔW₁−ΔW₂‖ from one stacked fp64 Gram pair:
``lowrank.compare``) against forming both ΔW and taking ‖ΔW₁−ΔW₂‖ and the cosine, and checks the
distance of a near-identical pair (B₂ = B₁ + 1e-6·noise) against its exact value.

Targets (issue 17's speed list, those this bench measures; each printed with met/missed):
svd ≥ 300× PEFT with error ≤ PEFT's; ties_svd, dare_linear_svd, dare_ties_svd, magnitude_prune_svd ≥ 5×
PEFT with error ≤ 1.01× PEFT's and peak memory ≤ ½ PEFT's; adapter diff ≥ 100× the dense computation and
exact (≤ 1e-6 relative) for near-identical adapters. Not measured here: merge-base streaming (peak RSS
≤ 2 shards) and the merge-into-base kernel bandwidth on a GPU.
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
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from registry.compute.diff import adapter_diff
from registry.compute.lora import LoraAdapter, LoraModule, load_adapter, save_adapter
from registry.compute.lowrank import difference_norm, frobenius_inner
from registry.compute.merge import dare_mask, mask_generator, merge_adapters

MODULES = {
    "self_attn.q_proj": ("h", "h"),
    "self_attn.k_proj": ("h", "h"),
    "self_attn.v_proj": ("h", "h"),
    "self_attn.o_proj": ("h", "h"),
    "mlp.gate_proj": ("i", "h"),
    "mlp.up_proj": ("i", "h"),
    "mlp.down_proj": ("h", "i"),
}
DENSE_SVD = ("ties_svd", "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")
METHODS = ("svd", *DENSE_SVD, "cat")
CASES = (*METHODS, "diff")
OPTIONS = {"svd": {}, "cat": {}, **{method: {"density": 0.5} for method in DENSE_SVD}}
SEED = 1234  # DARE's masks: ours from this seed, replayed into PEFT
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
            masks = replayed_masks(model, names, SEED) if method.startswith("dare") else nullcontext()
            with masks:
                model.add_weighted_adapter(
                    names, weights, "merged", combination_type=method, **OPTIONS[method]
                )
            if not factors:
                for key, module in model.base_model.model.named_modules():
                    if isinstance(module, LoraLayer) and "merged" in module.lora_A:
                        scale = module.scaling["merged"]
                        factors[f"{key}.B"] = (module.lora_B["merged"].weight.detach() * scale).float().cpu()
                        factors[f"{key}.A"] = module.lora_A["merged"].weight.detach().float().cpu()
            model.delete_adapter("merged")
    else:
        adapters = [load_adapter(directory) for directory in dirs]

        seed = {"seed": SEED} if method.startswith("dare") else {}

        def merge() -> None:
            result = merge_adapters(adapters, weights, method, device=args.device, **OPTIONS[method], **seed)
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


@contextmanager
def replayed_masks(model, names: list[str], seed: int) -> Iterator[None]:
    """PEFT's ``torch.bernoulli`` calls return our masks (``dare_mask`` from ``mask_generator(seed, module,
    f"W{i}")``): one per (LoRA module in model order, adapter present there), as tests/compute/test_merge.py
    replays them."""
    from peft.tuners.lora import LoraLayer

    schedule = []
    for key, module in model.base_model.model.named_modules():
        if isinstance(module, LoraLayer):
            schedule += [(key, f"W{i}") for i, name in enumerate(names) if name in module.lora_A]
    draws = iter(schedule)
    real = torch.bernoulli

    def bernoulli(p: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        key, slot = next(draws)
        density = float(p.reshape(-1)[0])  # PEFT's p is full_like(task tensor, density)
        return dare_mask(p.shape, density, mask_generator(seed, key, slot, p.device)).to(p.dtype)

    torch.bernoulli = bernoulli
    try:
        yield
    finally:
        torch.bernoulli = real


def dense_reference(method: str, adapters: list[LoraAdapter], key: str) -> torch.Tensor:
    """The element-wise merge before truncation (PEFT's ``ties``/``dare_*``/``magnitude_prune`` on the ΔWᵢ,
    DARE's masks from ``SEED``), via merge's own combine, which tests/compute/test_merge.py holds to PEFT."""
    from registry.compute.merge import _combine, _Workspace  # the bench's reference, not an API

    modules = [a.modules[key] for a in adapters]
    return _combine(
        method.removesuffix("_svd"),
        [lambda out, m=m: torch.mm(m.B, m.A, out=out).mul_(m.scale) for m in modules],
        modules[0].shape,
        list(WEIGHTS[: len(adapters)]),
        OPTIONS[method]["density"],
        "total",
        [lambda i=i: mask_generator(SEED, key, f"W{i}") for i in range(len(modules))],
        _Workspace(),
    )


def errors(method: str, adapters: list[LoraAdapter], peft: dict, ours: dict) -> tuple[float, float, float]:
    """Worst per-module (PEFT error, our error, PEFT-vs-ours difference)."""
    worst = [0.0, 0.0, 0.0]
    for key in adapters[0].modules:
        results = [(f[f"{key}.B"].double(), f[f"{key}.A"].double()) for f in (peft, ours)]
        if method in DENSE_SVD:
            reference = dense_reference(method, adapters, key).double()
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


def near_identical_error(adapter: LoraAdapter, device: str) -> float:
    """The worst relative error of ``adapter_diff``'s distance between ``adapter`` and a copy whose B's moved
    by 1e-6·noise (the trace formula would cancel there), against the exact ‖s·(B₂ − B₁)·A‖ in fp64."""
    first = _on_device(adapter, device)
    generator = torch.Generator().manual_seed(0)
    moved = {
        name: dataclasses.replace(m, B=m.B + 1e-6 * torch.randn(m.B.shape, generator=generator).to(device))
        for name, m in first.modules.items()
    }
    second = LoraAdapter(modules=moved, config=first.config)
    worst = 0.0
    for module in adapter_diff(first, second).modules:
        one, two = first.modules[module.name], second.modules[module.name]
        exact = float(
            torch.linalg.matrix_norm(((two.B.double() - one.B.double()) @ one.A.double()) * one.scale)
        )
        worst = max(worst, abs(module.distance - exact) / exact)
    return worst


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
    parser.add_argument(
        "--threads", type=int, help="torch threads for PEFT and ours alike (default: torch's, one per core)"
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

    if args.threads:
        torch.set_num_threads(args.threads)
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
        targets: list[tuple[str, str, str]] = []  # (target, measured, met/missed)
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
                command += ["--threads", str(args.threads)] if args.threads else []
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
            peaks = measured["peft"]["peak"], measured["ours"]["peak"]
            ratio = peft_s / our_s
            if method == "svd":
                checks = [ratio >= 300, our_err <= peft_err * (1 + 1e-5) + 1e-7]
                goal = "≥300× PEFT, err ≤ PEFT's"
                measured_text = f"{ratio:,.0f}×, err {our_err:.4e} vs PEFT {peft_err:.4e}"
            elif method in DENSE_SVD:
                checks = [ratio >= 5, our_err <= 1.01 * peft_err, peaks[1] <= peaks[0] / 2]
                goal = "≥5× PEFT, err ≤ 1.01×PEFT's, peak ≤ ½PEFT's"
                measured_text = (
                    f"{ratio:,.1f}×, err {our_err / peft_err:.6f}×PEFT, peak {peaks[1] / peaks[0]:.2f}×PEFT"
                )
            else:
                checks, goal = [], "exact"
            verdict = ("met" if all(checks) else "missed") if checks else ""
            label = f"{method} ({args.adapters}×r{args.rank}, {7 * args.layers} modules)"
            print(
                f"{label:<34} {peft_s:>8.3f}s {our_s:>8.3f}s {ratio:>9.1f}× "
                f"{mib(peaks[0]):>11} {mib(peaks[1]):>11} "
                f"{peft_err:>11.4e} {our_err:>11.4e} {agree:>8.1e}  {goal}{': ' + verdict if verdict else ''}"
            )
            if checks:
                targets.append((f"{method}: {goal}", measured_text, verdict))
        if "diff" in cases:
            diffs = diff_rows(adapters, args.device)
            dense_s, dense_err = diffs["dense"]
            seconds, worst = diffs["lowrank"]
            near = near_identical_error(adapters[0], args.device)
            ratio = dense_s / seconds
            verdict = "met" if ratio >= 100 and near <= 1e-6 else "missed"
            print(
                f"{'adapter diff (Gram) vs dense':<34} {dense_s:>8.3f}s {seconds:>8.5f}s {ratio:>9.1f}× "
                f"{'':>11} {'':>11} {dense_err:>11.1e} {worst:>11.1e} {'':>8}  "
                f"≥100×, near-identical err {near:.1e} ≤ 1e-6: {verdict}"
            )
            print(
                "diff row: 'PEFT' = both ΔW formed densely (fp32), 'ours' = adapter_diff (one fp64 Gram pair "
                f"per module); best of {DIFF_REPEAT} runs each; errors against dense fp64"
            )
            targets.append(
                (
                    "adapter diff ≥100× dense, exact (≤1e-6) for near-identical adapters",
                    f"{ratio:,.1f}×, near-identical distance err {near:.1e}",
                    verdict,
                )
            )
        print()
        print(f"{'target (issue 17, speed)':<70} {'measured':<48} verdict")
        print("-" * 127)
        for goal, measured_text, verdict in targets:
            print(f"{goal:<70} {measured_text:<48} {verdict}")
        streaming = "merge-base streaming ≤ 2 shards RSS on a ≥4 GB base"
        print(f"{streaming:<70} {'not measured by this bench':<48} -")


if __name__ == "__main__":
    main()
