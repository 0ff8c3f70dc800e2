"""Embedding lookup: Gather(table, token ids) with a constant table and integer ids from a model input. The
relevance of a token is the relevance of its embedding vector summed over the embedding dimension, so the
explained ids get a float relevance of their own shape (../shared/design.md)."""
import numpy as np

from .registry import attrs_of, register, register_gradient

# ops that may stand between an ids input and the Gather without changing which token sits where (GPT-2 reshapes
# its ids to [-1, seq] first); the token relevance is reshaped back to the input's shape
ID_PASSTHROUGH = ("Cast", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze")


def embedding_source(node, constants, producers, int_inputs):
    """The model input whose token ids this Gather looks up, or None when it is not an embedding lookup."""
    if node.op_type != "Gather" or node.input[0] not in constants or attrs_of(node).get("axis", 0) != 0:
        return None
    ids = node.input[1]
    while ids in producers and producers[ids].op_type in ID_PASSTHROUGH:
        ids = producers[ids].input[0]
    return ids if ids in int_inputs else None


@register("Embedding")
def sum_over_embedding(b, step, rel_outs):
    table_rank = len(b.shapes[step.node.input[0]])
    out_rank = len(b.shapes[step.node.output[0]])
    axes = np.arange(out_rank - table_rank + 1, out_rank, dtype=np.int64)
    per_token = b.op("ReduceSum", [rel_outs[0], b.const(axes, step.name, "embedding_axes", np.int64)], step.name,
                     "token_relevance", keepdims=0)
    ids = step.live_inputs[0]
    return {ids: b.op("Reshape", [per_token, b.op("Shape", [ids], step.name, "ids_shape")], step.name,
                      "relevance")}


@register_gradient("Embedding")
def embedding_times_gradient(b, step, grads):
    """Gradient form: a token's relevance is its embedding vector times its gradient, summed (LXT's heatmap)."""
    product = b.op("Mul", [step.node.output[0], grads[0]], step.name, "embedding_times_gradient")
    return sum_over_embedding(b, step, [product])
