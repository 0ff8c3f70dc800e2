"""An independent float64 numpy reference of LRP for LSTM and GRU classifiers (Arras et al. 2017, "Explaining
recurrent neural network predictions in sentiment analysis"; Arras et al. 2019, "Explaining and interpreting
LSTMs"), written from the papers' rules, not from the compiler:

- linear maps: the Epsilon rule, R_i = sum_j a_i w_ij / s(z_j) R_j, s(z) = z + eps * sign0(z) (the bias absorbs its
  share), one map over [x_t, h_{t-1}] per gate as the papers write it;
- gated products (a Sigmoid gate times a signal): the signal takes all, the gate nothing ("signal take all");
- sums of contributions (c = f * c' + i * g; GRU's h = (1 - z) * n + z * h'; n's inner sum): split by contribution,
  R_k = x_k / s(sum) R;
- element-wise activations (tanh): pass.

Weights are read from the ONNX ops (W, R, B in the ONNX layout: gates iofc for LSTM, zrh for GRU). Time steps are
batch-first here: x [N, T, I]."""
import numpy as np
from onnx import numpy_helper


def stabilize(z, eps):
    return z + eps * (np.sign(z) + (z == 0))


def epsilon_rule(a, weight, z, relevance, eps):
    """a [N, in], weight [out, in], z = a @ weight.T + b [N, out] -> relevance of a."""
    return a * ((relevance / stabilize(z, eps)) @ weight)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


class Layer:
    """One ONNX LSTM/GRU node's weights (float64)."""

    def __init__(self, node, weights):
        self.op = node.op_type
        attrs = {a.name: a for a in node.attribute}
        self.hidden = attrs["hidden_size"].i
        self.directions = 2 if attrs.get("direction") is not None and attrs["direction"].s == b"bidirectional" else 1
        self.linear_before_reset = attrs["linear_before_reset"].i if "linear_before_reset" in attrs else 0
        self.W, self.R = (weights[node.input[k]].astype(np.float64) for k in (1, 2))
        gates = 4 if self.op == "LSTM" else 3
        self.B = weights[node.input[3]].astype(np.float64) if len(node.input) > 3 and node.input[3] else \
            np.zeros((self.directions, 2 * gates * self.hidden))


def read_layers(model):
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "value" and node.op_type == "Constant":
                weights[node.output[0]] = numpy_helper.to_array(attr.t)
    layers = [Layer(n, weights) for n in model.graph.node if n.op_type in ("LSTM", "GRU")]
    gemm = next((n for n in model.graph.node if n.op_type == "Gemm"), None)
    if gemm is not None:  # torch's Linear on [N, features]: weight [out, in] (transB)
        return layers, (weights[gemm.input[1]].astype(np.float64), weights[gemm.input[2]].astype(np.float64))
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights)  # on [N, T, F]
    add = next(n for n in model.graph.node if n.op_type == "Add" and matmul.output[0] in n.input)
    bias = next(weights[n] for n in add.input if n in weights)
    return layers, (weights[matmul.input[1]].astype(np.float64).T, bias.astype(np.float64))


def lstm_direction(layer, d, x, h0, c0, reverse, eps, stab):
    """Forward of one direction; returns (outputs [N, T, H], backward(R_out [N, T, H]) -> (R_x, R_h0, R_c0))."""
    H, T = layer.hidden, x.shape[1]
    W, R, B = layer.W[d], layer.R[d], layer.B[d]
    weight = np.concatenate([W, R], axis=1)  # [4H, I + H]
    bias = B[:4 * H] + B[4 * H:]
    order = list(range(T - 1, -1, -1)) if reverse else list(range(T))
    h, c, records, out = h0, c0, {}, np.zeros((x.shape[0], T, H))
    for t in order:
        a = np.concatenate([x[:, t], h], axis=1)
        z = a @ weight.T + bias
        i, o, f, g = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), sigmoid(z[:, 2 * H:3 * H]), np.tanh(z[:, 3 * H:])
        c_new = f * c + i * g
        h_new = o * np.tanh(c_new)
        records[t] = (a, z, i, f, g, c, c_new)
        h, c, out[:, t] = h_new, c_new, h_new

    def backward(r_out):
        r_x = np.zeros_like(x)
        r_h, r_c = np.zeros_like(h0), np.zeros_like(c0)
        for t in reversed(order):
            a, z, i, f, g, c_prev, c_new = records[t]
            r_cell = r_out[:, t] + r_h + r_c  # h = o * tanh(c): the signal tanh(c) takes all
            share = r_cell / stabilize(c_new, stab)
            r_c = f * c_prev * share
            r_g = i * g * share  # i * g: the signal g takes all
            r_a = epsilon_rule(a, weight[3 * H:], z[:, 3 * H:], r_g, eps)
            r_x[:, t] += r_a[:, :x.shape[2]]
            r_h = r_a[:, x.shape[2]:]
        return r_x, r_h, r_c

    return out, backward


def gru_direction(layer, d, x, h0, c0, reverse, eps, stab):
    H, T = layer.hidden, x.shape[1]
    W, R, B = layer.W[d], layer.R[d], layer.B[d]
    Wb, Rb = B[:3 * H], B[3 * H:]
    assert layer.linear_before_reset, "the reference follows torch's GRU (linear_before_reset=1)"
    order = list(range(T - 1, -1, -1)) if reverse else list(range(T))
    h, records, out = h0, {}, np.zeros((x.shape[0], T, H))
    for t in order:
        gx, gh = x[:, t] @ W.T + Wb, h @ R.T + Rb
        z = sigmoid(gx[:, :H] + gh[:, :H])
        r = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        inner = gx[:, 2 * H:] + r * gh[:, 2 * H:]
        n = np.tanh(inner)
        h_new = (1 - z) * n + z * h
        records[t] = (gx, gh, z, r, inner, n, h, h_new)
        h, out[:, t] = h_new, h_new

    def backward(r_out):
        r_x, r_h = np.zeros_like(x), np.zeros_like(h0)
        for t in reversed(order):
            gx, gh, z, r, inner, n, h_prev, h_new = records[t]
            total = r_out[:, t] + r_h
            share = total / stabilize(h_new, stab)
            r_n = (1 - z) * n * share  # (1 - z) * n: the signal n takes all
            r_h = z * h_prev * share  # z * h': the signal h' takes all
            inner_share = r_n / stabilize(inner, stab)  # n = tanh(inner): pass; inner = gx_n + r * gh_n
            r_gx, r_gh = gx[:, 2 * H:] * inner_share, r * gh[:, 2 * H:] * inner_share  # r * gh_n: gh_n takes all
            r_x[:, t] += epsilon_rule(x[:, t], W[2 * H:], gx[:, 2 * H:], r_gx, eps)
            r_h = r_h + epsilon_rule(h_prev, R[2 * H:], gh[:, 2 * H:], r_gh, eps)
        return r_x, r_h, np.zeros_like(h0)

    return out, backward


def explain(model, x, target, *, batch_first=True, h0=None, c0=None, eps=1e-6, stab=1e-6, seed="logit",
            output_relevance=None):
    """LRP of a stack of LSTM/GRU layers and a Linear head on the last step's output (or, with output_relevance
    [N, T, classes], on every step's output). x: [N, T, I] (or [T, N, I]
    with batch_first=False); h0, c0: [layers * directions, N, H] or None (zeros). Returns (logits, R_x, R_h0, R_c0)
    in the model's own layouts."""
    layers, (w_fc, b_fc) = read_layers(model)
    x = np.asarray(x, np.float64)
    x = x if batch_first else x.transpose(1, 0, 2)
    n = x.shape[0]
    inputs, backwards, k = x, [], 0
    for layer in layers:
        outs, per_dir = [], []
        for d in range(layer.directions):
            zeros = np.zeros((n, layer.hidden))
            start_h = zeros if h0 is None else np.asarray(h0[k], np.float64)
            start_c = zeros if c0 is None else np.asarray(c0[k], np.float64)
            step = lstm_direction if layer.op == "LSTM" else gru_direction
            out, backward = step(layer, d, inputs, start_h, start_c, d == 1, eps, stab)
            outs.append(out)
            per_dir.append(backward)
            k += 1
        backwards.append((layer, per_dir))
        inputs = np.concatenate(outs, axis=2)
    r_seq = np.zeros_like(inputs)
    if output_relevance is not None:  # a score per step [N, T, classes], relevance given per score
        logits = inputs @ w_fc.T + b_fc
        r_logits = output_relevance * logits if seed == "logit" else output_relevance
        for t in range(inputs.shape[1]):
            r_seq[:, t] = epsilon_rule(inputs[:, t], w_fc, logits[:, t], r_logits[:, t], eps)
    else:
        last = inputs[:, -1]
        logits = last @ w_fc.T + b_fc
        chosen = np.where(np.asarray(target) < 0, logits.argmax(1), target)
        one_hot = np.eye(logits.shape[1])[chosen]
        r_logits = one_hot * logits if seed == "logit" else one_hot
        r_seq[:, -1] = epsilon_rule(last, w_fc, logits, r_logits, eps)
    r_h0, r_c0 = [], []
    for layer, per_dir in reversed(backwards):
        H, r_in = layer.hidden, 0
        hs, cs = [], []
        for d, backward in enumerate(per_dir):
            r_x, r_h, r_c = backward(r_seq[:, :, d * H:(d + 1) * H])
            r_in = r_in + r_x
            hs.append(r_h)
            cs.append(r_c)
        r_h0, r_c0 = hs + r_h0, cs + r_c0
        r_seq = r_in
    r_x = r_seq if batch_first else r_seq.transpose(1, 0, 2)
    return logits, r_x, np.stack(r_h0), np.stack(r_c0)
