"""Checkpoint reading: our read_table of a sharded checkpoint vs the direct safetensors read of
the one tensor, and vs instantiating the model with transformers.

Generates (once) a Llama-style checkpoint of about 2 GB under benchmarks/data/: a
128256 x 2048 float32 input embedding, an untied lm_head of the same size and one small
decoder layer, in three safetensors shards with ``model.safetensors.index.json``, plus a
128256-token tokenizer.json. Tensors are written directly with safetensors; no 2 GB model is
ever built to make the file.

    python benchmarks/bench_checkpoint.py            # ~2 GB checkpoint, ~5 GB peak RAM
    python benchmarks/bench_checkpoint.py --quick    # 32000 x 256, seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DATA, Measurement, baseline_mb, measure

EMBEDDING = "model.embed_tokens.weight"


def build(directory: Path, vocab: int, hidden: int, dtype: str) -> Path:
    """Write the checkpoint (skipped when it is already there)."""
    if (directory / "model.safetensors.index.json").is_file():
        return directory
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    inter = 2 * hidden
    layer = {
        **{f"model.layers.0.self_attn.{p}_proj.weight": (hidden, hidden) for p in "qkvo"},
        "model.layers.0.mlp.gate_proj.weight": (inter, hidden),
        "model.layers.0.mlp.up_proj.weight": (inter, hidden),
        "model.layers.0.mlp.down_proj.weight": (hidden, inter),
        "model.layers.0.input_layernorm.weight": (hidden,),
        "model.layers.0.post_attention_layernorm.weight": (hidden,),
    }
    shards = [{EMBEDDING: (vocab, hidden)}, layer,
              {"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}]
    weight_map: dict[str, str] = {}
    total = 0
    for number, shapes in enumerate(shards, 1):
        name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        # One shard in memory at a time keeps generation under ~2.5 GB.
        tensors = {k: (torch.randn(s, generator=gen) * 0.02).to(getattr(torch, dtype))
                   for k, s in shapes.items()}
        save_file(tensors, str(directory / name), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(tensors, name))
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
              "num_hidden_layers": 1, "num_attention_heads": max(1, hidden // 128),
              "num_key_value_heads": max(1, hidden // 128), "max_position_embeddings": 2048,
              "tie_word_embeddings": False, "torch_dtype": dtype, "rms_norm_eps": 1e-5,
              "bos_token_id": 1, "eos_token_id": 2}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    # A WordLevel tokenizer with one token per row, so the vocabulary is read as for real.
    tokens = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"tok{i}": i for i in range(3, vocab)}}
    tokenizer = {"version": "1.0", "added_tokens": [], "normalizer": None,
                 "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
                 "decoder": None,
                 "model": {"type": "WordLevel", "vocab": tokens, "unk_token": "<unk>"}}
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))
    return directory


def warm(directory: Path) -> None:
    """Read every shard once so that every contender finds it in the page cache."""
    for file in sorted(directory.glob("*.safetensors")):
        with open(file, "rb") as handle:
            while handle.read(1 << 24):
                pass


def best(body: str, *, label: str, setup: str, repeat: int) -> Measurement:
    runs = [measure(body, label=label, setup=setup) for _ in range(repeat)]
    return min(runs, key=lambda m: m.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="32000 x 256, for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (best kept)")
    parser.add_argument("--skip-transformers", action="store_true",
                        help="leave out from_pretrained (it needs the whole model in RAM)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="dtype of the checkpoint (bfloat16 is read back as float32)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    vocab, hidden = (32000, 256) if args.quick else (128256, 2048)
    suffix = "" if args.dtype == "float32" else "-bf16"
    directory = DATA / f"llama-sharded-{vocab}x{hidden}{suffix}"
    if args.build_only:
        build(directory, vocab, hidden, args.dtype)
        return
    # Built in a child process: on Linux a child's ru_maxrss starts from its parent's, so a
    # parent that had imported torch would inflate every contender's peak memory.
    subprocess.run([sys.executable, __file__, "--build-only", "--dtype", args.dtype,
                    *(["--quick"] * args.quick)], check=True)
    warm(directory)
    shard = json.loads((directory / "model.safetensors.index.json").read_text())[
        "weight_map"][EMBEDDING]
    tensor_mb = vocab * hidden * 4 / 2**20  # the float32 array every contender ends with
    size_gb = sum(f.stat().st_size for f in directory.glob("*.safetensors")) / 2**30
    print(f"checkpoint {directory} ({size_gb:.2f} GB); embedding {vocab} x {hidden} "
          f"{args.dtype}, {tensor_mb:.0f} MB as float32")

    base = baseline_mb()
    ours = best(f"""
        t = read_table({str(directory)!r})
        RESULT = [len(t), t.dim, t.metadata["shard"]]
    """, label="embsurgeon read_table", setup="from embsurgeon import read_table",
        repeat=args.repeat)
    assert ours.result == [vocab, hidden, shard], ours.result
    # safetensors >= 0.6 hands torch a memory-mapped tensor and reads nothing until it is
    # used, so the untouched pt figure is the cost of a lazy view. The peer for the targets
    # materialises the float32 array we return: numpy for float32, torch + .float() for bf16.
    if args.dtype == "float32":
        peer = best(f"""
            with safe_open({str(directory / shard)!r}, framework="numpy") as f:
                w = f.get_tensor({EMBEDDING!r})
            RESULT = list(w.shape)
        """, label="safe_open(numpy).get_tensor", setup="from safetensors import safe_open",
            repeat=args.repeat)
    else:
        peer = best(f"""
            with safe_open({str(directory / shard)!r}, framework="pt") as f:
                w = f.get_tensor({EMBEDDING!r}).float()
            RESULT = list(w.shape)
        """, label="safe_open(pt).get_tensor().float()", setup="import torch\n"
            "from safetensors import safe_open", repeat=args.repeat)
    lazy = best(f"""
        with safe_open({str(directory / shard)!r}, framework="pt") as f:
            w = f.get_tensor({EMBEDDING!r})
        RESULT = list(w.shape)
    """, label="safe_open(pt).get_tensor, untouched", setup="import torch\n"
        "from safetensors import safe_open", repeat=args.repeat)
    rows = [ours, peer, lazy]
    if not args.skip_transformers:
        rows.append(best(f"""
            model = AutoModelForCausalLM.from_pretrained({str(directory)!r})
            w = model.get_input_embeddings().weight
            RESULT = [list(w.shape), float(w[-1].sum())]
        """, label="AutoModelForCausalLM", setup="from transformers import AutoModelForCausalLM",
            repeat=1))

    print(f"interpreter baseline (python + numpy): {base:.0f} MB")
    print("| contender | seconds | peak MB | above baseline | x tensor size | time vs ours |")
    print("|---|---|---|---|---|---|")
    for m in rows:
        above = m.peak_mb - base
        print(f"| {m.label} | {m.seconds:.2f} | {m.peak_mb:.0f} | {above:.0f} | "
              f"{above / tensor_mb:.2f} | {m.seconds / ours.seconds:.2f} |")
    ratio = ours.seconds / peer.seconds
    mem = (ours.peak_mb - base) / tensor_mb
    print(f"targets: time vs safe_open {ratio:.2f}x (<= 1.5), "
          f"memory above baseline {mem:.2f}x tensor (<= 1.5)")


if __name__ == "__main__":
    main()
