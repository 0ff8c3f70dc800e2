"""Tiny seeded transformer classifiers exported to ONNX, with LXT 2.1's AttnLRP / CP-LRP relevance for them.

Writes models/transformers/<name>.onnx and tests/data/transformers/<name>.npz (read by
tests/test_transformer_references.py, which needs no torch). Regenerate everything with

    python -m venv /work/venv-lxt && /work/venv-lxt/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
        transformers==4.52.4 lxt==2.1 onnx onnxruntime numpy
    /work/venv-lxt/bin/python tools/make_reference_transformers.py [name ...]

Models (random weights from a seeded generator, nothing downloaded; eval mode; 3 classes):
- bert_sdpa, bert_eager: BertForSequenceClassification, hidden 32, 2 layers, 4 heads, intermediate 64, vocab 100,
  attn_implementation "sdpa" / "eager"; pad id 0 (masked by attention_mask), [CLS]-position pooler (Tanh).
- gpt2: GPT2ForSequenceClassification, n_embd 32, 2 layers, 4 heads, pad_token_id 0: the logits are taken at the
  rightmost non-pad token (a data-dependent Gather index).
- llama: LlamaForSequenceClassification, hidden 32, 2 layers, 4 heads, 2 key/value heads (grouped-query), head dim 8,
  intermediate 64, RoPE, RMSNorm, SiLU-gated MLP, pad_token_id 0.
- vit: torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
  mlp_dim=64, num_classes=3).
Seeds (torch.manual_seed and the generator of randomize() and of the inputs): per model in MODELS, chosen among 0..7
so that the top classes of the 4 samples differ. Every parameter is redrawn (randomize()): matrices N(0, 1/fan_in),
norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2), so attention is far from uniform and no bias or beta is zero.
Text inputs: 4 sequences of 12 token ids in 1..99, lengths 12, 9, 5, 12 (trailing pad id 0, attention_mask 0 there);
images: 4 of N(0, 1) at 3x32x32.

Export: torch.onnx.export(dynamo=False, opset_version=17), dynamic batch only; inputs `input_ids` int64 [N, 12] and
`attention_mask` int64 [N, 12] (text) or `x` float [N, 3, 32, 32]; output `logits` [N, 3]. onnxruntime is checked
against torch on batches of 4 and 1. Versions and recipe are in the .onnx metadata_props (keys ref.*).

Relevance: LXT 2.1 efficient mode (shared/attnlrp.md 0.1), `monkey_patch(module, map)` with map attnLRP and, where LXT
2.1 has one, cp_LRP (BERT: attnLRP only; GPT-2, Llama: both; torchvision ViT: cp_LRP only), each (model, map, dtype)
in its own subprocess because the patches are process-wide. The model is rebuilt from the same seed after patching
(BERT's map replaces the modeling module's classes), cast to float64 or float32, and the gradient of the sum over
samples of the top-class logit (target = argmax of the float64 logits) is taken at the explained tensor:
  text: the word-embedding output E (a forward hook swaps it for a leaf tensor; the model is still called with
        input_ids, because with `inputs_embeds` the GPT-2/Llama classifiers pool the last position instead of the
        last non-pad one), relevance per token = (E * grad_E).sum(-1), [N, L];
  ViT:  the pixels, relevance = x * grad_x, [N, 3, 32, 32].
The one-hot seed is applied by dividing by the target logit per sample (shared/attnlrp.md 0.2).
The .npz holds the inputs, `target`, `logits_f64` / `logits_f32` (unpatched torch), and `relevance_<composite>_f64` /
`_f32` for composite "attnlrp" and/or "cp-lrp" (onnx-lrp's names). tools/attnlrp_numpy.py (the plain-numpy
reference of shared/attnlrp.md section 4) is run on every float64 case as a cross-check; its agreement is printed.
"""
import importlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter, namedtuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import attnlrp_numpy  # tools/

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "transformers")
DATA_DIR = os.path.join(ROOT, "tests", "data", "transformers")
VOCAB, SEQ, PAD, LENGTHS, CLASSES = 100, 12, 0, [12, 9, 5, 12], 3
MAPS = {"attnlrp": "attnLRP", "cp-lrp": "cp_LRP"}  # onnx-lrp composite -> LXT map name


def bert_config(attn):
    from transformers import BertConfig
    return BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=SEQ, num_labels=CLASSES, pad_token_id=PAD,
                      attn_implementation=attn)


def gpt2_config():
    from transformers import GPT2Config
    return GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=32, n_layer=2, n_head=4, num_labels=CLASSES,
                      pad_token_id=PAD, use_cache=False, attn_implementation="sdpa")


def llama_config():
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=SEQ, num_labels=CLASSES,
                       pad_token_id=PAD, use_cache=False, attn_implementation="sdpa")


VIT = {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 4, "hidden_dim": 32, "mlp_dim": 64,
       "num_classes": CLASSES}

# lxt: LXT's model module, patches: the module its maps patch, family: attnlrp_numpy's builder, seed: picked
# among 0..7 so that the 4 samples have at least two different top classes and no near-tie or near-zero top logit.
Spec = namedtuple("Spec", "lxt patches family config cls seed")
MODELS = {
    "bert_sdpa": Spec("bert", "modeling_bert", "bert", lambda: bert_config("sdpa"), "BertForSequenceClassification", 5),
    "bert_eager": Spec("bert", "modeling_bert", "bert", lambda: bert_config("eager"), "BertForSequenceClassification",
                       5),
    "gpt2": Spec("gpt2", "modeling_gpt2", "gpt2", gpt2_config, "GPT2ForSequenceClassification", 4),
    "llama": Spec("llama", "modeling_llama", "llama", llama_config, "LlamaForSequenceClassification", 4),
    "vit": Spec("vit_torch", "vision_transformer", "vit", lambda: VIT, "VisionTransformer", 6),
}


def randomize(model, g):
    from transformers.pytorch_utils import Conv1D
    with torch.no_grad():
        for module in model.modules():
            for leaf, p in module.named_parameters(recurse=False):
                if p.ndim == 1:
                    p.copy_((1.0 if leaf == "weight" else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    fan_in = p.shape[0] if isinstance(module, Conv1D) else p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return model.eval()


def build(name):
    """The seeded model (classes looked up now, so a patched module's classes are used) and its inputs."""
    spec = MODELS[name]
    torch.manual_seed(spec.seed)
    g = torch.Generator().manual_seed(spec.seed)
    if spec.family == "vit":
        from torchvision.models import vision_transformer
        model = vision_transformer.VisionTransformer(**spec.config())
        inputs = {"x": torch.randn(4, 3, 32, 32, generator=g)}
    else:
        module = importlib.import_module(f"transformers.models.{spec.family}.{spec.patches}")
        model = getattr(module, spec.cls)(spec.config())
        ids = torch.randint(1, VOCAB, (4, SEQ), generator=g)
        mask = (torch.arange(SEQ)[None] < torch.tensor(LENGTHS)[:, None]).long()
        inputs = {"input_ids": ids.masked_fill(mask == 0, PAD), "attention_mask": mask}
    return randomize(model, g), inputs


class Logits(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def forward(model, inputs):
    return model(**inputs).logits if "input_ids" in inputs else model(inputs["x"])


def lxt_maps(name):
    module = importlib.import_module(f"lxt.efficient.models.{MODELS[name].lxt}")
    return {composite: getattr(module, m) for composite, m in MAPS.items() if hasattr(module, m)}


def lxt_relevance(name, composite, dtype, target):
    """Run in a fresh process: patch, rebuild, and return (logits, one-hot-seeded relevance) as numpy."""
    from lxt.efficient import monkey_patch
    monkey_patch(getattr(importlib.import_module(f"lxt.efficient.models.{MODELS[name].lxt}"), MODELS[name].patches),
                 lxt_maps(name)[composite])
    model, inputs = build(name)
    model, text, leaf = model.to(dtype), "input_ids" in inputs, []
    if text:  # the word-embedding output becomes a leaf; the ids still steer the masks and the pooling
        model.get_input_embeddings().register_forward_hook(
            lambda module, args, out: leaf.append(out.detach().requires_grad_()) or leaf[-1])
    else:
        inputs["x"] = inputs["x"].to(dtype).requires_grad_()
        leaf.append(inputs["x"])
    logits = forward(model, inputs)
    picked = logits[torch.arange(len(target)), torch.as_tensor(target)]
    picked.sum().backward()
    (explained,) = leaf
    R = explained * explained.grad
    R = R.sum(-1) if text else R
    R = R / picked.detach().reshape(-1, *[1] * (R.ndim - 1))
    return logits.detach().numpy(), R.detach().numpy()


def run_lxt(name, composite, dtype, target):
    """lxt_relevance in a subprocess (LXT's patches are process-wide and cannot be undone)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npz")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--lxt", name, composite, dtype, out,
                        ",".join(map(str, target))], check=True)
        with np.load(out) as f:
            return f["logits"], f["relevance"]


def export(name, model, inputs, path):
    names = list(inputs)
    wrapped = model if "x" in inputs else Logits(model)
    torch.onnx.export(wrapped, tuple(inputs.values()), path, input_names=names, output_names=["logits"],
                      dynamic_axes={n: {0: "N"} for n in names + ["logits"]}, opset_version=17, dynamo=False)
    proto = onnx.load(path)
    config = MODELS[name].config()
    meta = {
        "ref.tool": "tools/make_reference_transformers.py", "ref.seed": str(MODELS[name].seed),
        "ref.model": f"{MODELS[name].cls}, random weights (randomize()) from torch.manual_seed(seed), eval mode",
        "ref.config": json.dumps(config if isinstance(config, dict) else config.to_diff_dict(), sort_keys=True),
        "ref.export": "torch.onnx.export(dynamo=False, opset_version=17), dynamic batch axis",
        "ref.relevance": "LXT 2.1 efficient mode, monkey_patch per map, one-hot seed (relevance / target logit), "
                         "target = argmax of the float64 logits; tests/data/transformers/" + name + ".npz",
        "ref.lxt_maps": ", ".join(f"{MAPS[c]} ({c})" for c in lxt_maps(name)),
        **{f"ref.{p}": md.version(p) for p in ("torch", "torchvision", "transformers", "lxt")},
    }
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, path)
    return proto


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def reference(name):
    """Export models/transformers/<name>.onnx and return the .npz content; prints the checks."""
    spec = MODELS[name]
    model, inputs = build(name)
    with torch.no_grad():
        logits32 = forward(model, inputs).numpy()
        params = {k: v.double().numpy() for k, v in model.state_dict().items()}
        logits64 = forward(model.double(), {k: v.double() if v.is_floating_point() else v
                                            for k, v in inputs.items()}).numpy()
    target = logits64.argmax(1)
    path = os.path.join(MODEL_DIR, f"{name}.onnx")
    proto = export(name, model.float(), inputs, path)
    feeds = {k: v.numpy() for k, v in inputs.items()}
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    ort4 = session.run(None, feeds)[0]
    ort1 = session.run(None, {k: v[1:2] for k, v in feeds.items()})[0]
    ops = dict(sorted(Counter(n.op_type for n in proto.graph.node).items()))
    print(f"{name}: {os.path.getsize(path)} bytes, ops {ops}")
    print(f"  ORT vs torch f64: batch 4 {rel(ort4, logits64):.1e}, batch 1 {rel(ort1, logits64[1:2]):.1e}; "
          f"torch f32 vs f64 {rel(logits32, logits64):.1e}; targets {target.tolist()}")
    data = {**feeds, "target": target, "logits_f64": logits64, "logits_f32": logits32}
    cfg = spec.config()
    cfg = cfg if isinstance(cfg, dict) else cfg.to_dict()
    for composite in lxt_maps(name):
        l64, r64 = run_lxt(name, composite, "float64", target)
        l32, r32 = run_lxt(name, composite, "float32", target)
        np_logits, np_r = attnlrp_numpy.relevance(spec.family, params, cfg, feeds, target, composite)
        print(f"  {composite}: LXT f32 vs f64 {rel(r32, r64):.1e}; numpy vs LXT f64 {rel(np_r, r64):.1e} "
              f"(logits {rel(np_logits, logits64):.1e}); patched vs plain logits f64 {rel(l64, logits64):.1e}, "
              f"f32 {rel(l32, logits32):.1e}; sum R {np.round(r64.reshape(len(r64), -1).sum(1), 3).tolist()}")
        data[f"relevance_{composite}_f64"], data[f"relevance_{composite}_f32"] = r64, r32
    return data


def main(names):
    os.makedirs(MODEL_DIR, exist_ok=True)
    os.makedirs(DATA_DIR, exist_ok=True)
    for name in names or MODELS:
        np.savez_compressed(os.path.join(DATA_DIR, f"{name}.npz"), **reference(name))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lxt"]:
        name, composite, dtype, out, target = sys.argv[2:]
        logits, R = lxt_relevance(name, composite, getattr(torch, dtype), [int(t) for t in target.split(",")])
        np.savez(out, logits=logits, relevance=R)
    else:
        main(sys.argv[1:])
