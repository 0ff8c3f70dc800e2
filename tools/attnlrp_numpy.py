"""Plain-numpy AttnLRP / CP-LRP (shared/attnlrp.md section 4) for the tiny transformer classifiers of
tools/make_reference_transformers.py: a float64 forward and the modified backward of LXT 2.1's efficient mode.
A cross-check of the LXT reference only; torch-free (weights are a {torch state_dict name: array} dict).

Every forward step returns `(out, back)`, where `back(g_out)` is the modified gradient at the step's input; `seq` and
`residual` compose steps. `relevance()` seeds one-hot at the target, returns the logits and the relevance of the
explained tensor (tokens: the word-embedding output summed over the hidden axis, [N, L]; images: the pixels).
Composites: "attnlrp" and "cp-lrp" (section 2).
"""
from math import erf as _erf

import numpy as np

erf = np.vectorize(_erf, otypes=[float])
gelu = lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2)))  # noqa: E731
gelu_new = lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))  # noqa: E731
silu = lambda x: x / (1 + np.exp(-x))  # noqa: E731
MASKED = np.finfo(np.float64).min  # the additive mask value of transformers


# ------------------------------------------------------------------------------------------- rules (section 4)
def linear(x, W, b=None):  # W [out, in]; LRP-0 = the gradient
    return x @ W.T + (0 if b is None else b), lambda g: g @ W


def layer_norm(x, w, b, eps):  # sigma constant
    mu = x.mean(-1, keepdims=True)
    sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)

    def back(g):
        u = g * w / sd
        return u - u.mean(-1, keepdims=True)
    return (x - mu) / sd * w + b, back


def rms_norm(x, w, eps):  # r constant
    r = 1 / np.sqrt((x**2).mean(-1, keepdims=True) + eps)
    return w * x * r, lambda g: g * w * r


def act(f, x):  # identity rule
    y = f(x)
    d = y / (x + 1e-10)
    return y, lambda g: g * d


def softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(q, k, v, scale, mask, composite):  # [N, H, L, d]; mask additive
    T = lambda t: np.swapaxes(t, -1, -2)  # noqa: E731
    A = softmax(q @ T(k) * scale + mask)

    def back(g):
        if composite == "cp-lrp":  # A constant
            return 0 * q, 0 * k, T(A) @ g
        gA, gv = 0.5 * (g @ T(v)), 0.5 * (T(A) @ g)  # uniform on A.V
        gs = A * (gA - (A * gA).sum(-1, keepdims=True)) * scale  # softmax: gradient
        return 0.5 * (gs @ k), 0.5 * (T(gs) @ q), gv  # uniform on Q.K^T
    return A @ v, back


def gated(G, U, composite):  # silu(G) * U
    a = silu(G)

    def back(g):
        if composite == "cp-lrp":  # gate constant
            return 0 * G, g * a
        return 0.5 * g * U * a / (G + 1e-10), 0.5 * g * a
    return a * U, back


# ------------------------------------------------------------------------------------------- composition
def seq(*steps):
    def step(x):
        backs = []
        for s in steps:
            x, b = s(x)
            backs.append(b)

        def back(g):
            for b in reversed(backs):
                g = b(g)
            return g
        return x, back
    return step


def residual(branch):  # h + branch(h): the add passes the gradient to both summands
    def step(h):
        y, back = branch(h)
        return h + y, lambda g: g + back(g)
    return step


def heads(x, n):
    N, L, D = x.shape
    return x.reshape(N, L, n, D // n).transpose(0, 2, 1, 3)


def unheads(x):
    N, H, L, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(N, L, H * d)


def rope(L, d, theta):  # Llama rotary embedding: x*cos + rotate_half(x)*sin, positions 0..L-1
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    f = np.outer(np.arange(L), inv)
    cos, sin = np.cos(np.concatenate([f, f], -1)), np.sin(np.concatenate([f, f], -1))
    rot = lambda x: np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)  # noqa: E731
    rot_t = lambda g: np.concatenate([g[..., d // 2:], -g[..., :d // 2]], -1)  # noqa: E731
    return lambda x: (x * cos + rot(x) * sin, lambda g: g * cos + rot_t(g * sin))


def mha(q, k, v, o, nh, nkv, mask, composite, rotary=None):
    """Self-attention; q, k, v, o are (W, b) pairs; grouped-query when nkv < nh (repeat_kv)."""
    rep = nh // nkv

    def step(x):
        (Q, bq), (K, bk), (V, bv) = linear(x, *q), linear(x, *k), linear(x, *v)
        Q, K, V = heads(Q, nh), heads(K, nkv), heads(V, nkv)
        if rotary:
            (Q, rq), (K, rk) = rotary(Q), rotary(K)
        out, ba = attention(Q, np.repeat(K, rep, 1), np.repeat(V, rep, 1), Q.shape[-1] ** -0.5, mask, composite)
        y, bo = linear(unheads(out), *o)

        def back(g):
            gq, gk, gv = ba(heads(bo(g), nh))
            gk, gv = (t.reshape(t.shape[0], nkv, rep, *t.shape[2:]).sum(2) for t in (gk, gv))
            if rotary:
                gq, gk = rq(gq), rk(gk)
            return bq(unheads(gq)) + bk(unheads(gk)) + bv(unheads(gv))
        return y, back
    return step


def causal_mask(mask):
    L = mask.shape[1]
    keep = np.tril(np.ones((L, L), bool))[None, None] & (mask[:, None, None, :] != 0)
    return np.where(keep, 0.0, MASKED)


def last_token_pool(ids, pad):
    idx = (np.arange(ids.shape[1]) * (ids != pad)).argmax(-1)
    rows = np.arange(len(ids))

    def step(s):
        def back(g):
            gs = np.zeros_like(s)
            gs[rows, idx] = g
            return gs
        return s[rows, idx], back
    return step


def first_token(h):
    def back(g):
        gh = np.zeros_like(h)
        gh[:, 0] = g
        return gh
    return h[:, 0], back


# ------------------------------------------------------------------------------------------- models
def bert(p, c, input_ids, attention_mask, composite):
    P = lambda name: (p[name + ".weight"], p[name + ".bias"])  # noqa: E731
    ln = lambda name: lambda x: layer_norm(x, *P(name), c["layer_norm_eps"])  # noqa: E731
    mask = np.where(attention_mask[:, None, None, :] == 0, MASKED, 0.0)
    nh = c["num_attention_heads"]
    blocks = []
    for i in range(c["num_hidden_layers"]):
        pre = f"bert.encoder.layer.{i}."
        a = pre + "attention."
        blocks += [residual(mha(P(a + "self.query"), P(a + "self.key"), P(a + "self.value"), P(a + "output.dense"),
                                nh, nh, mask, composite)), ln(a + "output.LayerNorm"),
                   residual(seq(lambda x, n=pre + "intermediate.dense": linear(x, *P(n)), lambda x: act(gelu, x),
                                lambda x, n=pre + "output.dense": linear(x, *P(n)))), ln(pre + "output.LayerNorm")]
    L = input_ids.shape[1]
    const = p["bert.embeddings.position_embeddings.weight"][:L] + p["bert.embeddings.token_type_embeddings.weight"][0]
    net = seq(lambda E: (E + const, lambda g: g), ln("bert.embeddings.LayerNorm"), *blocks, first_token,
              lambda x: linear(x, *P("bert.pooler.dense")), lambda x: act(np.tanh, x),
              lambda x: linear(x, *P("classifier")))
    return p["bert.embeddings.word_embeddings.weight"][input_ids], net


def gpt2(p, c, input_ids, attention_mask, composite):
    P = lambda name: (p[name + ".weight"], p[name + ".bias"])  # noqa: E731
    conv1d = lambda name: (p[name + ".weight"].T, p[name + ".bias"])  # noqa: E731  Conv1D weight is [in, out]
    ln = lambda name: lambda x: layer_norm(x, *P(name), c["layer_norm_epsilon"])  # noqa: E731
    mask, nh, D = causal_mask(attention_mask), c["n_head"], c["n_embd"]
    blocks = []
    for i in range(c["n_layer"]):
        pre = f"transformer.h.{i}."
        W, b = conv1d(pre + "attn.c_attn")
        qkv = [(W[j * D:(j + 1) * D], b[j * D:(j + 1) * D]) for j in range(3)]
        blocks += [residual(seq(ln(pre + "ln_1"), mha(*qkv, conv1d(pre + "attn.c_proj"), nh, nh, mask, composite))),
                   residual(seq(ln(pre + "ln_2"), lambda x, n=pre + "mlp.c_fc": linear(x, *conv1d(n)),
                                lambda x: act(gelu_new, x), lambda x, n=pre + "mlp.c_proj": linear(x, *conv1d(n))))]
    wpe = p["transformer.wpe.weight"][:input_ids.shape[1]]
    net = seq(lambda E: (E + wpe, lambda g: g), *blocks, ln("transformer.ln_f"),
              lambda x: linear(x, p["score.weight"]), last_token_pool(input_ids, c["pad_token_id"]))
    return p["transformer.wte.weight"][input_ids], net


def llama(p, c, input_ids, attention_mask, composite):
    W = lambda name: (p[name + ".weight"], None)  # noqa: E731  no biases
    rms = lambda name: lambda x: rms_norm(x, p[name + ".weight"], c["rms_norm_eps"])  # noqa: E731
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    rotary = rope(input_ids.shape[1], c["hidden_size"] // nh, c["rope_theta"])
    mask = causal_mask(attention_mask)

    def mlp(pre):
        def step(x):
            (G, bg), (U, bu) = linear(x, *W(pre + "gate_proj")), linear(x, *W(pre + "up_proj"))
            h, bh = gated(G, U, composite)
            y, bd = linear(h, *W(pre + "down_proj"))

            def back(g):
                gG, gU = bh(bd(g))
                return bg(gG) + bu(gU)
            return y, back
        return step

    blocks = []
    for i in range(c["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        a = pre + "self_attn."
        blocks += [residual(seq(rms(pre + "input_layernorm"), mha(W(a + "q_proj"), W(a + "k_proj"), W(a + "v_proj"),
                                                                  W(a + "o_proj"), nh, nkv, mask, composite, rotary))),
                   residual(seq(rms(pre + "post_attention_layernorm"), mlp(pre + "mlp.")))]
    net = seq(*blocks, rms("model.norm"), lambda x: linear(x, p["score.weight"]),
              last_token_pool(input_ids, c["pad_token_id"]))
    return p["model.embed_tokens.weight"][input_ids], net


def vit(p, c, x, composite):
    """torchvision VisionTransformer: patches -> class token + position embedding -> pre-LN blocks -> ln -> head."""
    P = lambda name: (p[name + ".weight"], p[name + ".bias"])  # noqa: E731
    ln = lambda name: lambda x: layer_norm(x, *P(name), 1e-6)  # noqa: E731
    nh, D, s = c["num_heads"], c["hidden_dim"], c["patch_size"]
    N, C, H, Wd = x.shape
    h, w = H // s, Wd // s

    def embed(img):  # Conv(k = stride = s) as a linear map of the flattened patches, patch order row-major
        patches = img.reshape(N, C, h, s, w, s).transpose(0, 2, 4, 1, 3, 5).reshape(N, h * w, C * s * s)
        z, bz = linear(patches, p["conv_proj.weight"].reshape(D, -1), p["conv_proj.bias"])
        cls = np.broadcast_to(p["class_token"], (N, 1, D))
        out = np.concatenate([cls, z], 1) + p["encoder.pos_embedding"]

        def back(g):
            gp = bz(g[:, 1:])
            return gp.reshape(N, h, w, C, s, s).transpose(0, 3, 1, 4, 2, 5).reshape(N, C, H, Wd)
        return out, back

    blocks = []
    for i in range(c["num_layers"]):
        pre = f"encoder.layers.encoder_layer_{i}."
        Wi, bi = p[pre + "self_attention.in_proj_weight"], p[pre + "self_attention.in_proj_bias"]
        qkv = [(Wi[j * D:(j + 1) * D], bi[j * D:(j + 1) * D]) for j in range(3)]
        blocks += [residual(seq(ln(pre + "ln_1"), mha(*qkv, P(pre + "self_attention.out_proj"), nh, nh, 0.0,
                                                      composite))),
                   residual(seq(ln(pre + "ln_2"), lambda x, n=pre + "mlp.0": linear(x, *P(n)),
                                lambda x: act(gelu, x), lambda x, n=pre + "mlp.3": linear(x, *P(n))))]
    net = seq(embed, *blocks, ln("encoder.ln"), first_token, lambda x: linear(x, *P("heads.head")))
    return x, net


MODELS = {"bert": bert, "gpt2": gpt2, "llama": llama, "vit": vit}


def relevance(family, params, config, inputs, target, composite):
    """(logits [N, C], one-hot-seeded relevance: tokens [N, L], pixels [N, 3, H, W]) in float64."""
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    if family == "vit":
        explained, net = vit(params, config, np.asarray(inputs["x"], np.float64), composite)
    else:
        explained, net = MODELS[family](params, config, inputs["input_ids"], inputs["attention_mask"], composite)
    logits, back = net(explained)
    seed = np.eye(logits.shape[1])[target]
    R = explained * back(seed)
    if family != "vit":
        R = R.sum(-1)
    picked = logits[np.arange(len(target)), target]
    return logits, R / picked.reshape(-1, *[1] * (R.ndim - 1))
