"""How long detection takes, independent of file size.

    python benchmarks/detect.py [--runs 20] [--dir /tmp/x]

Writes sparse (header-only) files in a temporary folder:
- a Flux-dev-sized safetensors (real layout, ~24 GB, bf16) and the same as GGUF Q4_0;
- a Qwen3-style LLM GGUF with a 151k-entry tokenizer array, to compare the hand-written GGUF
  header parser with ``gguf.GGUFReader`` (which memory-maps and builds numpy views);
and prints the median ``inspect()`` time per file (target: < 20 ms for the 20 GB file);
then a 100-file folder (Flux-sized DiTs, VAEs, text encoders, LoRAs) catalogued cold (every
header read) and warm (cached by path, size and mtime; target: < 1 s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdcpp_service.config import Settings  # noqa: E402
from sdcpp_service.models import inspect, scan  # noqa: E402
from tests.models import corpus  # noqa: E402

Layout = dict[str, tuple[int, ...]]


def flux_dev_layout(hidden: int = 3072, double: int = 19, single: int = 38) -> Layout:
    lay: Layout = {}

    def lin(name: str, out: int, inp: int, bias: bool = True) -> None:
        lay[name + ".weight"] = (out, inp)
        if bias:
            lay[name + ".bias"] = (out,)

    for i in range(double):
        for s in ("img", "txt"):
            p = f"double_blocks.{i}.{s}_"
            lin(p + "mod.lin", 6 * hidden, hidden)
            lin(p + "attn.qkv", 3 * hidden, hidden)
            lin(p + "attn.proj", hidden, hidden)
            lin(p + "mlp.0", 4 * hidden, hidden)
            lin(p + "mlp.2", hidden, 4 * hidden)
            lay[p + "attn.norm.query_norm.scale"] = (128,)
            lay[p + "attn.norm.key_norm.scale"] = (128,)
    for i in range(single):
        p = f"single_blocks.{i}."
        lin(p + "linear1", 7 * hidden, hidden)
        lin(p + "linear2", hidden, 5 * hidden)
        lin(p + "modulation.lin", 3 * hidden, hidden)
        lay[p + "norm.query_norm.scale"] = (128,)
        lay[p + "norm.key_norm.scale"] = (128,)
    for name, inp in (("img_in", 64), ("txt_in", 4096)):
        lin(name, hidden, inp)
    for name, inp in (("time_in", 256), ("vector_in", 768), ("guidance_in", 256)):
        lin(name + ".in_layer", hidden, inp)
        lin(name + ".out_layer", hidden, hidden)
    lin("final_layer.linear", 64, hidden)
    lin("final_layer.adaLN_modulation.1", 2 * hidden, hidden)
    return lay


def write_safetensors(path: Path, layout: Layout) -> Path:
    return corpus.write_safetensors(path, layout, dtype="BF16")


def write_gguf(path: Path, layout: Layout, tokens: int = 0) -> Path:
    """Q4_0 matrices, F32 vectors; ``tokens``: an LLM with that many vocabulary entries."""
    tensors = {n: (shape, "Q4_0" if len(shape) == 2 else "F32") for n, shape in layout.items()}
    if not tokens:
        return corpus.write_gguf(path, tensors)
    vocab = {"tokenizer.ggml.tokens": [f"tok{i:06d}" for i in range(tokens)]}
    return corpus.write_gguf(path, tensors, vocab, arch="qwen3")


def llm_layout(hidden: int = 2560, layers: int = 36) -> Layout:
    lay: Layout = {"token_embd.weight": (151936, hidden), "output_norm.weight": (hidden,)}
    for i in range(layers):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            lay[f"blk.{i}.{part}.weight"] = (hidden, hidden)
        lay[f"blk.{i}.attn_q_norm.weight"] = (128,)
        lay[f"blk.{i}.ffn_up.weight"] = (3 * hidden, hidden)
    return lay


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    first = time.perf_counter()
    fn()
    cold = (time.perf_counter() - first) * 1000
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return cold, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        flux = flux_dev_layout()
        files = {
            "flux-dev bf16 safetensors": write_safetensors(d / "flux1-dev.safetensors", flux),
            "flux-dev Q4_0 gguf": write_gguf(d / "flux1-dev-Q4_0.gguf", flux),
            "qwen3-4b gguf + 151k tokens": write_gguf(
                d / "qwen3.gguf", llm_layout(), tokens=151936
            ),
        }
        print(f"{'file':<30} {'size':>9} {'tensors':>8} {'cold ms':>8} {'median ms':>10}  result")
        for label, path in files.items():
            info = inspect(path)
            cold, med = median_ms(lambda p=path: inspect(p), args.runs)  # type: ignore[misc]
            size = f"{path.stat().st_size / 1e9:.1f} GB"
            print(f"{label:<30} {size:>9} {info.tensors:>8} {cold:8.1f} {med:10.2f}  {info.title}")
        try:
            from gguf import GGUFReader

            path = files["qwen3-4b gguf + 151k tokens"]
            from sdcpp_service.models.headers import read_header

            _, ours = median_ms(lambda: read_header(path), max(3, args.runs // 4))
            _, theirs = median_ms(lambda: GGUFReader(path), max(3, args.runs // 4))
            print(
                f"\nGGUF header with 151k tokenizer entries: ours {ours:.1f} ms, "
                f"gguf.GGUFReader {theirs:.1f} ms ({theirs / ours:.1f}x)"
            )
        except ImportError:  # pragma: no cover
            pass
        catalog_benchmark(d)


def catalog_benchmark(d: Path) -> None:
    folder = d / "folder"
    folder.mkdir()
    flux = flux_dev_layout()
    small: dict[str, Layout] = {
        "vae": {"decoder.conv_in.weight": (512, 16, 3, 3), "encoder.conv_in.weight": (128, 3, 3, 3)},
        "clip": {"text_model.embeddings.token_embedding.weight": (49408, 768),
                 "text_model.encoder.layers.0.self_attn.q_proj.weight": (768, 768)},
        "lora": {f"lora_unet_double_blocks_{i}_img_attn_qkv.lora_down.weight": (16, 3072)
                 for i in range(19)},
    }  # fmt: skip
    for i in range(100):
        layout = flux if i % 4 == 0 else small[("vae", "clip", "lora")[i % 3]]
        write_safetensors(folder / f"file{i:03d}.safetensors", layout)
    settings = Settings(data_dir=d / "data")
    for label in ("cold", "warm", "warm"):
        start = time.perf_counter()
        cat = scan(settings, roots=[folder])
        ms = (time.perf_counter() - start) * 1000
        print(f"catalog 100 files {label:<5} {ms:8.1f} ms  ({cat.stats})")


if __name__ == "__main__":
    main()
