"""One trunk attention layer in each kernel the targets can use, side by side, as ratios.

    python -m sapiens_edge.benchmarks.studies.attention_kernels --model 0.1b-seg --input-size 1024x768

ONNX Runtime: the opset-23 `Attention` op (what the dynamo exporter emits for SDPA), ONNX Runtime's
contrib `MultiHeadAttention` (token-major input, what the `fused_attention` rewrite exports) and
MatMul + Softmax + MatMul spelled out; PyTorch SDPA in fp32 and bf16 for reference. Random q, k, v
of the model's shape (prefix tokens included), batch 1; one warm-up each, then --runs interleaved rounds
(every kernel once per round), median.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from .recipe_sweep import interleaved


def _session(graph_nodes, inputs, initializers, threads: int, contrib: bool = False):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rank = 3 if contrib else 4  # MultiHeadAttention is token-major (B, N, H*d); the others (B, H, N, d)
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, [f"d{i}" for i in range(rank)])
    graph = helper.make_graph(graph_nodes, "attention", inputs, [out], initializers)
    opsets = [helper.make_opsetid("", 23)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    model = helper.make_model(graph, opset_imports=opsets)
    if not contrib:
        onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def measure(heads: int, tokens: int, head_dim: int, threads: int, runs: int) -> list[dict]:
    import torch
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, heads, tokens, head_dim), dtype=np.float32) for _ in range(3))
    bhnd = {"q": q, "k": k, "v": v}
    token_major = {n: t.transpose(0, 2, 1, 3).reshape(1, tokens, heads * head_dim).copy() for n, t in bhnd.items()}

    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    four_d = [vi(n, [1, heads, tokens, head_dim]) for n in "qkv"]
    rows: list[dict] = []
    fns: dict[str, Callable[[], object]] = {}
    sess = _session([helper.make_node("Attention", ["q", "k", "v"], ["o"])], four_d, [], threads)
    ref = sess.run(None, bhnd)[0]
    rows.append({"kernel": "onnxruntime Attention (opset 23)"})
    fns[rows[-1]["kernel"]] = lambda: sess.run(None, bhnd)

    mha = _session([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft",
                                     num_heads=heads)],
                   [vi(n, [1, tokens, heads * head_dim]) for n in "qkv"], [], threads, contrib=True)
    out = mha.run(None, token_major)[0].reshape(1, tokens, heads, head_dim).transpose(0, 2, 1, 3)
    rows.append({"kernel": "onnxruntime MultiHeadAttention (contrib)", "max_abs_diff": float(np.abs(out - ref).max())})
    fns[rows[-1]["kernel"]] = lambda: mha.run(None, token_major)

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [head_dim ** -0.5])
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["ss"]),
             helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["o"])]
    plain = _session(nodes, four_d, [scale], threads)
    out = plain.run(None, bhnd)[0]
    rows.append({"kernel": "onnxruntime MatMul+Softmax+MatMul", "max_abs_diff": float(np.abs(out - ref).max())})
    fns[rows[-1]["kernel"]] = lambda: plain.run(None, bhnd)

    torch.set_num_threads(threads)
    tq, tk, tv = (torch.from_numpy(t) for t in (q, k, v))
    sdpa = torch.nn.functional.scaled_dot_product_attention
    bq, bk, bv = (t.bfloat16() for t in (tq, tk, tv))
    rows += [{"kernel": "torch SDPA fp32"}, {"kernel": "torch SDPA bf16"}]
    fns["torch SDPA fp32"] = lambda: sdpa(tq, tk, tv)
    fns["torch SDPA bf16"] = lambda: sdpa(bq, bk, bv)
    with torch.no_grad():
        seconds = interleaved(fns, runs)  # every kernel once per round, so machine noise hits all alike
    for r in rows:
        r["ms"] = seconds[r["kernel"]] * 1000
    base = rows[0]["ms"]
    for r in rows:
        r["vs_opset23"] = base / r["ms"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="0.1b-seg", help="zoo name without 'sapiens2-' (sets heads and dims)")
    parser.add_argument("--input-size", default="1024x768")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    from sapiens_edge.zoo import get_model_info

    info = get_model_info(args.model)
    h, w = (int(v) for v in args.input_size.lower().split("x"))
    tokens = (h // 16) * (w // 16) + 1 + info.arch.num_storage_tokens  # patch 16; cls + storage tokens
    rows = measure(info.arch.num_heads, tokens, info.arch.head_dim, args.threads, args.runs)
    print(f"{info.name}: one attention layer, {info.arch.num_heads} heads x {tokens} tokens x {info.arch.head_dim}, "
          f"{args.threads} threads, median of {args.runs}\n")
    print("| kernel | ms per layer | speed vs opset-23 Attention | max abs diff |\n|---|---:|---:|---:|")
    for r in rows:
        diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else ""
        print(f"| {r['kernel']} | {r['ms']:.1f} | {r['vs_opset23']:.2f}x | {diff} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
