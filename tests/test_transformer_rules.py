"""The transformer composites (attnlrp, cp-lrp) rule by rule, on small graphs in each ONNX spelling, against a
float64 numpy implementation of ../shared/attnlrp.md section 4 (LXT 2.1's modified gradients, written here from the
formulas, no onnx_lrp code): LayerNorm (the op and its decomposition), RMSNorm (with Casts), the attention core
(SDPA-style scale split over q and k^T, eager Div scaling, an additive mask), the gated product, the identity rule
on GELU (erf, tanh) and SiLU, and the residual sum. One-hot seed: relevance 1 at the target logit."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import onnx_lrp
from builders import make_model
from conftest import run

N, L, D, CLASSES = 3, 5, 8, 4
TARGET = np.array([0, 3, 1], np.int64)
rng0 = np.random.default_rng(7)


def weights(*shape, scale=None):
    return (rng0.normal(size=shape) * (scale or 1 / np.sqrt(shape[0]))).astype(np.float32)


# -- numpy reference (gradient form: relevance = x * g_x) -----------------------------------------------------------
def erf(x):
    from math import erf as scalar_erf
    return np.vectorize(scalar_erf, otypes=[float])(x)


def gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1 + np.exp(-x))


def layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    return (x - mu) / sd * w + b, sd


def layer_norm_bwd(g, w, sd):
    u = g * w / sd
    return u - u.mean(-1, keepdims=True)


def softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def head(h, w_out):
    """Mean over tokens, then the logits; returns logits and the gradient at h for the one-hot seed / logit."""
    pooled = h.mean(1)
    logits = pooled @ w_out
    seed = np.eye(CLASSES)[TARGET] / logits[np.arange(N), TARGET][:, None]
    return logits, np.repeat((seed @ w_out.T)[:, None, :] / L, L, axis=1)


# -- graphs ----------------------------------------------------------------------------------------------------------
X = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", L, D])
LOGITS = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])


def classifier(body, w, out="h"):
    """body: nodes from x to `out` [N, L, D]; then ReduceMean over tokens and a MatMul to the logits."""
    w = {"w_out": weights(D, CLASSES), **w}  # a given head wins
    nodes = body + [helper.make_node("ReduceMean", [out], ["pooled"], name="pool", axes=[1], keepdims=0),
                    helper.make_node("MatMul", ["pooled", "w_out"], ["logits"], name="out")]
    return make_model(nodes, [X], [LOGITS], w), w["w_out"].astype(np.float64)


def relevance(model, x, composite="attnlrp"):
    compiled = onnx_lrp.compile(model, composite, seed="one-hot")
    out = run(compiled, {"x": x, "target": TARGET})
    np.testing.assert_allclose(out["logits"], run(model, {"x": x})["logits"], rtol=1e-5, atol=1e-6)
    return out["relevance_x"]


def assert_close(ours, expected, rel=1e-5):
    assert np.abs(expected).max() > 0
    assert np.abs(ours - expected).max() <= rel * np.abs(expected).max(), np.abs(ours - expected).max()


def data():
    return np.random.default_rng(3).normal(size=(N, L, D)).astype(np.float32)


# -- LayerNorm: the op and the decomposition ------------------------------------------------------------------------
def layer_norm_nodes(spelling):
    if spelling == "op":
        return [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["h"], name="ln", axis=-1,
                                 epsilon=1e-5)]
    return [helper.make_node("ReduceMean", ["x"], ["mu"], name="mean", axes=[-1]),
            helper.make_node("Sub", ["x", "mu"], ["d"], name="center"),
            helper.make_node("Pow", ["d", "two"], ["d2"], name="square"),
            helper.make_node("ReduceMean", ["d2"], ["var"], name="var", axes=[-1]),
            helper.make_node("Add", ["var", "eps"], ["var_eps"], name="add_eps"),
            helper.make_node("Sqrt", ["var_eps"], ["sd"], name="sqrt"),
            helper.make_node("Div", ["d", "sd"], ["n"], name="normalize"),
            helper.make_node("Mul", ["n", "gamma"], ["scaled"], name="scale"),
            helper.make_node("Add", ["scaled", "beta"], ["h"], name="shift")]


@pytest.mark.parametrize("spelling", ["op", "decomposed"])
def test_layer_norm_keeps_sigma_constant(spelling):
    gamma, beta = (1 + 0.3 * rng0.normal(size=D)).astype(np.float32), (0.2 * rng0.normal(size=D)).astype(np.float32)
    model, w_out = classifier(layer_norm_nodes(spelling), {"gamma": gamma, "beta": beta, "two": np.float32(2.0),
                                                           "eps": np.float32(1e-5)})
    x = data()
    h, sd = layer_norm(x.astype(np.float64), gamma, beta)
    _, g_h = head(h, w_out)
    assert_close(relevance(model, x), x * layer_norm_bwd(g_h, gamma, sd))


def test_rms_norm_with_casts_keeps_the_normalizer_constant():
    gamma = (1 + 0.3 * rng0.normal(size=D)).astype(np.float32)
    body = [helper.make_node("Cast", ["x"], ["c"], name="cast_in", to=TensorProto.FLOAT),
            helper.make_node("Pow", ["c", "two"], ["c2"], name="square"),
            helper.make_node("ReduceMean", ["c2"], ["ms"], name="mean_square", axes=[-1]),
            helper.make_node("Add", ["ms", "eps"], ["ms_eps"], name="add_eps"),
            helper.make_node("Sqrt", ["ms_eps"], ["rms"], name="sqrt"),
            helper.make_node("Div", ["one", "rms"], ["r"], name="inverse"),
            helper.make_node("Mul", ["c", "r"], ["n"], name="normalize"),
            helper.make_node("Cast", ["n"], ["n32"], name="cast_out", to=TensorProto.FLOAT),
            helper.make_node("Mul", ["gamma", "n32"], ["h"], name="scale")]
    model, w_out = classifier(body, {"gamma": gamma, "two": np.float32(2.0), "eps": np.float32(1e-6),
                                     "one": np.float32(1.0)})
    x = data().astype(np.float64)
    r = 1 / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6)
    _, g_h = head(gamma * x * r, w_out)
    assert_close(relevance(model, x.astype(np.float32)), x * g_h * gamma * r)


# -- activations: the identity rule ---------------------------------------------------------------------------------
ACTIVATIONS = {
    "gelu-erf": (gelu, lambda: [helper.make_node("Div", ["a", "sqrt2"], ["a1"], name="div"),
                                helper.make_node("Erf", ["a1"], ["a2"], name="erf"),
                                helper.make_node("Add", ["a2", "one"], ["a3"], name="add1"),
                                helper.make_node("Mul", ["a", "a3"], ["a4"], name="mul_x"),
                                helper.make_node("Mul", ["a4", "half"], ["h"], name="mul_half")]),
    "gelu-tanh": (gelu_tanh, lambda: [helper.make_node("Mul", ["a", "half"], ["t0"], name="half_x"),
                                      helper.make_node("Pow", ["a", "three"], ["t1"], name="cube"),
                                      helper.make_node("Mul", ["t1", "c044"], ["t2"], name="scale_cube"),
                                      helper.make_node("Add", ["a", "t2"], ["t3"], name="inner"),
                                      helper.make_node("Mul", ["t3", "c079"], ["t4"], name="scale_inner"),
                                      helper.make_node("Tanh", ["t4"], ["t5"], name="tanh"),
                                      helper.make_node("Add", ["t5", "one"], ["t6"], name="add1"),
                                      helper.make_node("Mul", ["t0", "t6"], ["h"], name="product")]),
    "silu": (silu, lambda: [helper.make_node("Sigmoid", ["a"], ["s"], name="sigmoid"),
                            helper.make_node("Mul", ["a", "s"], ["h"], name="mul")]),
}
ACTIVATION_CONSTANTS = {"sqrt2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5),
                        "three": np.float32(3), "c044": np.float32(0.044715),
                        "c079": np.float32(np.sqrt(2 / np.pi))}


@pytest.mark.parametrize("composite", ["attnlrp", "cp-lrp"])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_gets_the_identity_rule(name, composite):
    f, nodes = ACTIVATIONS[name]
    w1, b1 = weights(D, D), (0.1 * rng0.normal(size=D)).astype(np.float32)
    body = [helper.make_node("MatMul", ["x", "w1"], ["m"], name="dense"),
            helper.make_node("Add", ["b1", "m"], ["a"], name="bias")] + nodes()
    model, w_out = classifier(body, dict(ACTIVATION_CONSTANTS, w1=w1, b1=b1))
    x = data().astype(np.float64)
    a = x @ w1 + b1
    _, g_h = head(f(a), w_out)
    g_a = g_h * f(a) / (a + 1e-10)
    assert_close(relevance(model, x.astype(np.float32), composite), x * (g_a @ w1.T))


# -- attention ------------------------------------------------------------------------------------------------------
HEADS, DH = 2, 4


def attention_nodes(spelling, masked):
    """Self-attention with 2 heads on x [N, L, D]; q/k/v projections, scores, optional mask add, Softmax, A.V."""
    split = lambda src, dst: [  # noqa: E731 - [N, L, D] -> [N, H, L, DH]
        helper.make_node("Reshape", [src, "heads_shape"], [f"{dst}_r"], name=f"{dst}_reshape"),
        helper.make_node("Transpose", [f"{dst}_r"], [dst], name=f"{dst}_transpose", perm=[0, 2, 1, 3])]
    nodes = []
    for p in "qkv":
        nodes += [helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}_lin"], name=f"{p}_proj")] + split(f"{p}_lin", p)
    if spelling == "sdpa":  # scale split over q and k^T
        nodes += [helper.make_node("Mul", ["q", "root_scale"], ["q_s"], name="q_scale"),
                  helper.make_node("Transpose", ["k"], ["k_t"], name="k_T", perm=[0, 1, 3, 2]),
                  helper.make_node("Mul", ["k_t", "root_scale"], ["k_s"], name="k_scale"),
                  helper.make_node("MatMul", ["q_s", "k_s"], ["scores"], name="qk")]
    else:  # eager: Q.K^T, then Div by sqrt(d)
        nodes += [helper.make_node("Transpose", ["k"], ["k_t"], name="k_T", perm=[0, 1, 3, 2]),
                  helper.make_node("MatMul", ["q", "k_t"], ["raw"], name="qk"),
                  helper.make_node("Div", ["raw", "sqrt_d"], ["scores"], name="scale")]
    if masked:
        nodes += [helper.make_node("Add", ["scores", "mask"], ["scores_m"], name="mask_add")]
    nodes += [helper.make_node("Softmax", ["scores_m" if masked else "scores"], ["att"], name="softmax", axis=-1),
              helper.make_node("MatMul", ["att", "v"], ["ctx"], name="av"),
              helper.make_node("Transpose", ["ctx"], ["ctx_t"], name="ctx_T", perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ctx_t", "merge_shape"], ["ctx_m"], name="merge"),
              helper.make_node("MatMul", ["ctx_m", "wo"], ["o"], name="o_proj"),
              helper.make_node("Add", ["x", "o"], ["h"], name="residual")]
    return nodes


def attention_reference(x, w, composite, mask):
    heads = lambda t: t.reshape(N, L, HEADS, DH).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = (heads(x @ w[f"w{p}"]) for p in "qkv")
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(DH) + mask
    a = softmax(s)
    ctx = (a @ v).transpose(0, 2, 1, 3).reshape(N, L, D)
    h = x + ctx @ w["wo"]
    _, g_h = head(h, w["w_out"])
    g_ctx = heads(g_h @ w["wo"].T)
    if composite == "cp-lrp":
        g_q = g_k = np.zeros_like(q)
        g_v = a.transpose(0, 1, 3, 2) @ g_ctx
    else:
        g_a, g_v = 0.5 * g_ctx @ v.transpose(0, 1, 3, 2), 0.5 * a.transpose(0, 1, 3, 2) @ g_ctx
        g_s = a * (g_a - (a * g_a).sum(-1, keepdims=True)) / np.sqrt(DH)
        g_q, g_k = 0.5 * g_s @ k, 0.5 * g_s.transpose(0, 1, 3, 2) @ q
    unheads = lambda t: t.transpose(0, 2, 1, 3).reshape(N, L, D)  # noqa: E731
    g_x = g_h + sum(unheads(g) @ w[f"w{p}"].T for p, g in zip("qkv", (g_q, g_k, g_v)))
    return x * g_x


@pytest.mark.parametrize("composite", ["attnlrp", "cp-lrp"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("spelling", ["sdpa", "eager"])
def test_attention_core(spelling, masked, composite):
    w = {f"w{p}": weights(D, D) for p in "qkvo"}
    mask = np.zeros((1, 1, 1, L), np.float32)
    mask[..., -2:] = -3.4028235e38  # the last two tokens are padding
    consts = {"heads_shape": np.array([0, L, HEADS, DH], np.int64), "merge_shape": np.array([0, L, D], np.int64),
              "root_scale": np.float32(DH ** -0.25), "sqrt_d": np.float32(np.sqrt(DH)), "mask": mask}
    model, w_out = classifier(attention_nodes(spelling, masked), dict(w, **consts))
    x = data()
    expected = attention_reference(x.astype(np.float64), {**{k: v.astype(np.float64) for k, v in w.items()},
                                                          "w_out": w_out}, composite, mask if masked else 0.0)
    ours = relevance(model, x, composite)
    assert np.all(np.isfinite(ours))
    assert_close(ours, expected)


# -- gated product --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("composite", ["attnlrp", "cp-lrp"])
def test_gated_product(composite):
    w = {"wg": weights(D, D), "wu": weights(D, D)}
    body = [helper.make_node("MatMul", ["x", "wg"], ["g"], name="gate_proj"),
            helper.make_node("Sigmoid", ["g"], ["sg"], name="sigmoid"),
            helper.make_node("Mul", ["g", "sg"], ["act"], name="silu"),
            helper.make_node("MatMul", ["x", "wu"], ["u"], name="up_proj"),
            helper.make_node("Mul", ["act", "u"], ["h"], name="gated")]
    model, w_out = classifier(body, w)
    x = data().astype(np.float64)
    g, u = x @ w["wg"], x @ w["wu"]
    _, g_h = head(silu(g) * u, w_out)
    if composite == "attnlrp":
        g_g, g_u = 0.5 * g_h * u * silu(g) / (g + 1e-10), 0.5 * g_h * silu(g)
    else:
        g_g, g_u = 0 * g, g_h * silu(g)
    assert_close(relevance(model, x.astype(np.float32), composite), x * (g_g @ w["wg"].T + g_u @ w["wu"].T))


def test_cp_lrp_conserves_without_biases():
    """cp-lrp on a bias-free block (attention, LayerNorm without beta, GELU): relevance sums to the seed."""
    w = {f"w{p}": weights(D, D) for p in "qkvo"}
    consts = {"heads_shape": np.array([0, L, HEADS, DH], np.int64), "merge_shape": np.array([0, L, D], np.int64),
              "root_scale": np.float32(DH ** -0.25), "gamma": np.ones(D, np.float32), "beta": np.zeros(D, np.float32)}
    body = attention_nodes("sdpa", False)
    body[-1] = helper.make_node("Add", ["x", "o"], ["res"], name="residual")
    body += [helper.make_node("LayerNormalization", ["res", "gamma", "beta"], ["h"], name="ln", axis=-1)]
    model, _ = classifier(body, dict(w, **consts))
    sums = relevance(model, data(), "cp-lrp").reshape(N, -1).sum(1)
    np.testing.assert_allclose(sums, 1.0, atol=1e-3)


def test_a_cnn_composite_on_a_transformer_gives_its_rule_to_the_linear_layers():
    """`epsilon` on LayerNorm -> dense -> GELU: epsilon on the dense layers (the head too), attnlrp's rules on the
    norm and the activation; a rule's relevance R_x becomes a gradient again as R_x / (x + 1e-10 sign x)."""
    gamma, beta = (1 + 0.3 * rng0.normal(size=D)).astype(np.float32), (0.2 * rng0.normal(size=D)).astype(np.float32)
    w1, b1 = weights(D, D), (0.1 * rng0.normal(size=D)).astype(np.float32)
    body = layer_norm_nodes("op")[:1]
    body[0].output[0] = "n"
    body += [helper.make_node("MatMul", ["n", "w1"], ["m"], name="dense"),
             helper.make_node("Add", ["m", "b1"], ["a"], name="bias")] + ACTIVATIONS["gelu-erf"][1]()
    model, w_out = classifier(body, dict(ACTIVATION_CONSTANTS, gamma=gamma, beta=beta, w1=w1, b1=b1))
    x = data().astype(np.float64)

    def s(z, eps):
        return z + eps * np.where(z >= 0, 1.0, -1.0)

    n, sd = layer_norm(x, gamma, beta)
    a = n @ w1 + b1
    pooled = gelu(a).mean(1)
    logits = pooled @ w_out
    g_logits = np.eye(CLASSES)[TARGET] / logits[np.arange(N), TARGET][:, None]
    g_pooled = pooled * ((g_logits * logits / s(logits, 1e-6)) @ w_out.T) / s(pooled, 1e-10)  # epsilon, head
    g_h = np.repeat(g_pooled[:, None, :] / L, L, axis=1)
    g_a = g_h * gelu(a) / (a + 1e-10)  # identity rule
    g_n = n * ((g_a * a / s(a, 1e-6)) @ w1.T) / s(n, 1e-10)  # epsilon, dense
    expected = x * layer_norm_bwd(g_n, gamma, sd)
    notes = []
    compiled = onnx_lrp.compile(model, "epsilon", seed="one-hot", notes=notes)
    assert any("'epsilon' on a model with attention or LayerNorm" in n for n in notes)
    assert_close(run(compiled, {"x": x.astype(np.float32), "target": TARGET})["relevance_x"], expected)


# -- GroupNorm as torch exports it: InstanceNormalization on [N, G, -1] and a per-channel affine ---------------------
@pytest.mark.parametrize("spelling", ["instance-norm", "group-norm-op"])
def test_group_norm_keeps_sigma_constant(spelling):
    """As torch exports it (InstanceNormalization on [N, G, -1], then a per-channel affine), and as the
    GroupNormalization op of opset 21."""
    c, groups, size = 4, 2, 3
    gamma, beta = (1 + 0.3 * rng0.normal(size=c)).astype(np.float32), (0.2 * rng0.normal(size=c)).astype(np.float32)
    w = {"group_shape": np.array([0, groups, -1], np.int64), "back_shape": np.array([0, c, size, size], np.int64),
         "ones": np.ones(groups, np.float32), "zeros": np.zeros(groups, np.float32),
         "gamma": gamma.reshape(c, 1, 1), "beta": beta.reshape(c, 1, 1), "w_out": weights(c, CLASSES),
         "gamma_c": gamma, "beta_c": beta}
    if spelling == "instance-norm":
        nodes = [helper.make_node("Reshape", ["x", "group_shape"], ["grouped"], name="group"),
                 helper.make_node("InstanceNormalization", ["grouped", "ones", "zeros"], ["normed"], name="norm",
                                  epsilon=1e-5),
                 helper.make_node("Reshape", ["normed", "back_shape"], ["n4"], name="ungroup"),
                 helper.make_node("Mul", ["n4", "gamma"], ["scaled"], name="scale"),
                 helper.make_node("Add", ["scaled", "beta"], ["h"], name="shift")]
    else:
        nodes = [helper.make_node("GroupNormalization", ["x", "gamma_c", "beta_c"], ["h"], name="norm",
                                  num_groups=groups, epsilon=1e-5)]
    nodes += [helper.make_node("ReduceMean", ["h", "pool_axes"], ["pooled"], name="pool", keepdims=0),
              helper.make_node("MatMul", ["pooled", "w_out"], ["logits"], name="out")]
    w["pool_axes"] = np.array([2, 3], np.int64)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, size, size])
    model = make_model(nodes, [x_info], [LOGITS], w, opset=21, ir_version=10)
    x = np.random.default_rng(4).normal(size=(N, c, size, size))
    xg = x.reshape(N, groups, -1)
    sd = np.sqrt(xg.var(-1, keepdims=True) + 1e-5)
    h = ((xg - xg.mean(-1, keepdims=True)) / sd).reshape(x.shape) * gamma[:, None, None] + beta[:, None, None]
    w_out = w["w_out"].astype(np.float64)
    logits = h.mean((2, 3)) @ w_out
    seed = np.eye(CLASSES)[TARGET] / logits[np.arange(N), TARGET][:, None]
    g_h = np.broadcast_to((seed @ w_out.T)[:, :, None, None] / size ** 2, x.shape)
    u = (g_h * gamma[:, None, None]).reshape(N, groups, -1) / sd
    expected = x * (u - u.mean(-1, keepdims=True)).reshape(x.shape)
    out = run(onnx_lrp.compile(model, "attnlrp", seed="one-hot"), {"x": x.astype(np.float32), "target": TARGET})
    assert_close(out["relevance_x"], expected)


def test_a_model_with_attention_gets_attnlrp_by_default():
    w = {f"w{p}": weights(D, D) for p in "qkvo"}
    consts = {"heads_shape": np.array([0, L, HEADS, DH], np.int64), "merge_shape": np.array([0, L, D], np.int64),
              "root_scale": np.float32(DH ** -0.25)}
    model, _ = classifier(attention_nodes("sdpa", False), dict(w, **consts))
    notes = []
    compiled = onnx_lrp.compile(model, seed="one-hot", notes=notes)
    assert any("attnlrp" in n for n in notes)
    assert next(p.value for p in compiled.metadata_props if p.key == "onnx_lrp.composite") == "attnlrp"
    np.testing.assert_array_equal(run(compiled, {"x": data(), "target": TARGET})["relevance_x"], relevance(model, data()))


def test_attention_with_conv_projections_and_batchnorm_compiles_the_same_way():
    """q, k, v from 1x1 Convs with a BatchNormalization each (as in conv-attention hybrids) give the same relevance
    as the same attention with MatMul projections whose weights and biases fold the BatchNorm in by hand."""
    w = {f"w{p}": weights(D, D) for p in "qkvo"}
    bn = {p: ((1 + 0.2 * rng0.normal(size=D)).astype(np.float32), (0.1 * rng0.normal(size=D)).astype(np.float32),
              (0.1 * rng0.normal(size=D)).astype(np.float32), rng0.uniform(0.5, 1.5, D).astype(np.float32))
          for p in "qkv"}
    consts = {"heads_shape": np.array([0, L, HEADS, DH], np.int64), "merge_shape": np.array([0, L, D], np.int64),
              "root_scale": np.float32(DH ** -0.25), "w_out": weights(D, CLASSES)}
    conv_nodes = [helper.make_node("Transpose", ["x"], ["x_t"], name="to_channels", perm=[0, 2, 1]),
                  helper.make_node("Unsqueeze", ["x_t", "last"], ["x_4d"], name="to_image")]
    conv_w, folded_w = dict(consts, last=np.array([3], np.int64)), dict(consts, wo=w["wo"])
    for p in "qkv":
        gamma, beta, mean, var = bn[p]
        scale = gamma / np.sqrt(var + 1e-5)
        conv_nodes += [helper.make_node("Conv", ["x_4d", f"c{p}"], [f"{p}_c"], name=f"{p}_conv"),
                       helper.make_node("BatchNormalization", [f"{p}_c", f"g{p}", f"b{p}", f"m{p}", f"v{p}"],
                                        [f"{p}_bn"], name=f"{p}_bn", epsilon=1e-5),
                       helper.make_node("Squeeze", [f"{p}_bn", "last"], [f"{p}_sq"], name=f"{p}_squeeze"),
                       helper.make_node("Transpose", [f"{p}_sq"], [f"{p}_lin"], name=f"{p}_to_tokens", perm=[0, 2, 1])]
        conv_w.update({f"c{p}": w[f"w{p}"].T[:, :, None, None].copy(), f"g{p}": gamma, f"b{p}": beta, f"m{p}": mean,
                       f"v{p}": var})
        folded_w.update({f"w{p}": (w[f"w{p}"] * scale).astype(np.float32),
                         f"b{p}": (beta - mean * scale).astype(np.float32)})
    attention = attention_nodes("sdpa", False)
    projections = {f"{p}_proj" for p in "qkv"}
    conv_model, _ = classifier(conv_nodes + [n for n in attention if n.name not in projections],
                               dict(conv_w, wo=w["wo"]))
    matmul_nodes = []
    for p in "qkv":
        matmul_nodes += [helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}_mm"], name=f"{p}_proj"),
                         helper.make_node("Add", [f"{p}_mm", f"b{p}"], [f"{p}_lin"], name=f"{p}_bias")]
    folded_model, _ = classifier(matmul_nodes + [n for n in attention if n.name not in projections], folded_w)
    x = data()
    for composite in ("attnlrp", "cp-lrp"):
        assert_close(relevance(conv_model, x, composite), relevance(folded_model, x, composite))
