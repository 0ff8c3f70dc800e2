"""What the demo models in models/demo/ must show when explained (tools/train_{digits,clever_hans,tabular,text,board}
_demo.py train them). Each test compiles a shipped model with onnx_lrp.compile, runs it with onnxruntime on the
shipped held-out samples and checks a property of the relevance that a wrong model, wrong data or a wrong
explanation would break. No torch and no scikit-learn: everything comes from the shipped .onnx / .npz / .json files.
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import MODELS, cached, run
from onnx import numpy_helper

import onnx_lrp

DEMO = os.path.join(MODELS, "demo")
FILES = {
    "digits_cnn.onnx": ["digits_test.npz"],
    "clever_hans_cnn.onnx": ["clever_hans_test.npz"],
    "breast_cancer_mlp.onnx": ["breast_cancer_features.json", "breast_cancer_test.npz"],
    "review_classifier.onnx": ["review_vocab.json", "review_test.npz"],
    "othello_net.onnx": ["othello_boards.npz"],
}


def path(name):
    return os.path.join(DEMO, name)


def data(name):
    with np.load(path(name)) as f:
        return {k: f[k] for k in f.files}


def explain(model, feeds, composite=None, output=None, target=None, **options):
    """Compile once per (model, composite, output, options) and run; returns {output name: array}."""
    key = ("test_demos", model, composite, output, tuple(sorted(options.items())))
    compiled = cached(key, lambda: onnx_lrp.compile(path(model), composite, output=output, **options))
    n = len(next(iter(feeds.values())))
    return run(compiled, {**feeds, "target": np.full(n, -1, np.int64) if target is None else target})


def plain(model, feeds):
    session = ort.InferenceSession(path(model), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def positive_share(R, region):
    """Per sample: the share of the positive relevance that lies in `region` (bool, R's shape)."""
    P = np.maximum(R, 0).reshape(len(R), -1)
    return (P * region.reshape(len(R), -1)).sum(1) / P.sum(1)


@pytest.mark.parametrize("model", sorted(FILES))
def test_shipped_files(model):
    assert os.path.getsize(path(model)) < 1 << 20
    for extra in FILES[model]:
        assert os.path.getsize(path(extra)) < 1 << 20
    proto = onnx.load(path(model))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    for value in list(proto.graph.input) + list(proto.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "N", value.name  # dynamic batch


# -- digits: the evidence is on the ink --------------------------------------------------------------------------------
def test_digits_accuracy_on_the_shipped_test_digits():
    d = data("digits_test.npz")
    x, y = d["x"], d["y"]
    assert x.shape == (50, 1, 8, 8) and x.dtype == np.float32 and sorted(np.bincount(y)) == [5] * 10
    assert x.min() == 0 and x.max() <= 1 and (x == 0).mean() > 0.3  # pixel / 16: the background is exactly 0
    logits = plain("digits_cnn.onnx", {"input": x})["logits"]
    assert (logits.argmax(1) == y).mean() >= 0.95


@pytest.mark.parametrize("composite,options", [(None, {}), ("epsilon-gamma-box", {"low": 0.0, "high": 1.0})])
def test_digits_positive_relevance_lies_on_the_ink(composite, options):
    """With the default composite (flat first layer) and z-box, relevance can land on background pixels too (ink is
    about half the pixels): most of the positive relevance must still be on the ink, on average and for most
    correctly classified digits, and an ink pixel must get more than a background pixel."""
    d = data("digits_test.npz")
    x, y = d["x"], d["y"]
    out = explain("digits_cnn.onnx", {"input": x}, composite, **options)
    R = out["relevance_input"]
    assert R.shape == x.shape and np.isfinite(R).all()
    right = out["logits"].argmax(1) == y
    ink = x > 0
    share = positive_share(R, ink)[right]
    assert share.mean() > 0.6 and (share > 0.5).mean() >= 0.8, np.round(share, 2)
    area = ink.reshape(len(x), -1).mean(1)[right]
    assert (share > area).mean() >= 0.9  # denser on the ink than its share of the pixels


def test_digits_epsilon_gives_the_background_nothing():
    """Epsilon is proportional to the input at the first layer: background pixels (exactly 0) get exactly 0."""
    x = data("digits_test.npz")["x"]
    R = explain("digits_cnn.onnx", {"input": x}, "epsilon")["relevance_input"]
    assert (R[x == 0] == 0).all() and (np.abs(R).reshape(len(x), -1).sum(1) > 0).all()


# -- Clever Hans: the corner mark decides ------------------------------------------------------------------------------
def test_clever_hans_model_relies_on_the_mark():
    d = data("clever_hans_test.npz")
    mark = d["mark"]
    assert mark.shape == (40, 16, 16) and (mark.sum((1, 2)) == 9).all()
    assert (d["x"][:, 0][mark] == 1).all() and (d["x_unmarked"][:, 0][mark] == 0).all()
    assert (d["x"] == d["x_unmarked"])[:, 0][~mark].all()  # only the mark differs
    marked = plain("clever_hans_cnn.onnx", {"input": d["x"]})["logits"].argmax(1)
    unmarked = plain("clever_hans_cnn.onnx", {"input": d["x_unmarked"]})["logits"].argmax(1)
    assert (marked == d["y"]).mean() >= 0.95
    assert (unmarked == d["y"]).mean() <= 0.5  # 4 classes: chance is 0.25
    assert np.corrcoef(d["digit"], d["y"])[0, 1] ** 2 < 0.1  # the digit shown says nothing about the class


@pytest.mark.parametrize("composite,mean_share", [(None, 0.5), ("epsilon", 0.8)])
def test_clever_hans_positive_relevance_lies_on_the_mark(composite, mean_share):
    """The mark is 9 of 256 pixels (3.5 %), yet it must hold most of the positive relevance."""
    d = data("clever_hans_test.npz")
    out = explain("clever_hans_cnn.onnx", {"input": d["x"]}, composite)
    R = out["relevance_input"][:, 0]
    assert np.isfinite(R).all()
    share = positive_share(R, d["mark"])
    assert share.mean() > mean_share and (share > 0.5).mean() >= 0.8, np.round(share, 2)
    # the decoy digit is not evidence for the class: it holds far less positive relevance than the mark
    digit = (d["x"][:, 0] > 0) & ~d["mark"]
    assert (positive_share(R, digit) < share).mean() >= 0.9


# -- tabular: equal to an independent numpy LRP-epsilon of the MLP -----------------------------------------------------
def numpy_lrp_epsilon(model_path, x, epsilon):
    """LRP-epsilon in float64 from the ONNX file's own weights: Sub/Div (standardization, passed through), Gemm
    (transB=1), Relu; seed one_hot(argmax) * logit; z stabilized as z + eps * sign0(z) (sign0(0) = +1)."""
    proto = onnx.load(model_path)
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer}
    a, layers = x.astype(np.float64), []
    for node in proto.graph.node:
        if node.op_type in ("Sub", "Div"):
            assert not layers, "standardization before the first Gemm only"
            a = a - weights[node.input[1]] if node.op_type == "Sub" else a / weights[node.input[1]]
        elif node.op_type == "Gemm":
            attrs = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
            assert attrs.get("transB") == 1 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
            assert not attrs.get("transA")
            W, b = weights[node.input[1]], weights[node.input[2]]
            z = a @ W.T + b
            layers.append((a, W, z))
            a = z
        elif node.op_type == "Relu":
            a = np.maximum(a, 0)
        else:
            raise AssertionError(f"unexpected op {node.op_type}")
    logits = a
    R = np.zeros_like(logits)
    rows = np.arange(len(x))
    R[rows, logits.argmax(1)] = logits[rows, logits.argmax(1)]
    for a, W, z in reversed(layers):
        R = a * ((R / (z + epsilon * (np.sign(z) + (z == 0)))) @ W)
    return logits, R


@pytest.mark.parametrize("epsilon", [1e-6, 0.5])
def test_tabular_relevance_equals_numpy_lrp_epsilon(epsilon):
    d = data("breast_cancer_test.npz")
    x = d["x"]
    out = explain("breast_cancer_mlp.onnx", {"features": x}, "epsilon", epsilon=epsilon)
    logits, R_ref = numpy_lrp_epsilon(path("breast_cancer_mlp.onnx"), x, epsilon)
    R = out["relevance_features"]
    assert R.shape == x.shape == (20, 30) and R.dtype == np.float32 and np.isfinite(R).all()
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-4, atol=1e-4)
    scale = np.abs(R_ref).max(1, keepdims=True)
    assert (np.abs(R - R_ref) <= 1e-4 * scale).all(), np.abs(R - R_ref).max()
    assert (out["logits"].argmax(1) == d["y"]).mean() >= 0.9


def test_tabular_features_file_and_stable_top_features():
    with open(path("breast_cancer_features.json")) as f:
        meta = json.load(f)
    assert len(meta["features"]) == len(set(meta["features"])) == 30 and meta["features"][0] == "mean radius"
    proto = onnx.load(path("breast_cancer_mlp.onnx"))
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    sub, div = proto.graph.node[0], proto.graph.node[1]  # the standardization baked into the model
    assert (sub.op_type, div.op_type) == ("Sub", "Div") and sub.input[0] == proto.graph.input[0].name
    np.testing.assert_allclose(weights[sub.input[1]], meta["mean"], rtol=1e-6)
    np.testing.assert_allclose(weights[div.input[1]], meta["std"], rtol=1e-6)
    x = data("breast_cancer_test.npz")["x"]
    R = explain("breast_cancer_mlp.onnx", {"features": x}, "epsilon")["relevance_features"]
    top = np.argsort(-np.abs(R), 1)[:, :5]
    for k in (0, 7, 13):  # one row at a time: the same ranking as in the batch
        one = explain("breast_cancer_mlp.onnx", {"features": x[k:k + 1]}, "epsilon")["relevance_features"][0]
        np.testing.assert_allclose(one, R[k], rtol=1e-5, atol=1e-6)
        assert np.argsort(-np.abs(one))[:5].tolist() == top[k].tolist()
    # a feature exactly at the training mean is neutral: its standardized value is 0, so its relevance is 0
    at_mean = x[:3].copy()
    at_mean[:, 3] = weights[sub.input[1]][3]
    R_mean = explain("breast_cancer_mlp.onnx", {"features": at_mean}, "epsilon")["relevance_features"]
    assert (np.abs(R_mean[:, 3]) <= 1e-6 * np.abs(R_mean).max(1)).all()


# -- text: sentiment words carry the evidence --------------------------------------------------------------------------
def test_text_token_relevance():
    d = data("review_test.npz")
    with open(path("review_vocab.json")) as f:
        vocab = json.load(f)
    ids = d["input_ids"]
    assert vocab["tokens"][:2] == ["[PAD]", "[UNK]"] and ids.shape[1] == vocab["max_length"]
    index = {w: i for i, w in enumerate(vocab["tokens"])}
    for row, text in zip(ids, d["text"]):  # the shipped ids are the shipped sentences, encoded by the vocabulary
        words = str(text).split()
        assert row.tolist() == [index.get(w, 1) for w in words] + [0] * (len(row) - len(words))
    out = explain("review_classifier.onnx", {"input_ids": ids}, "epsilon")
    R = out["relevance_input_ids"]
    assert R.shape == ids.shape and R.dtype == np.float32 and np.isfinite(R).all()
    assert (out["logits"].argmax(1) == d["label"]).mean() >= 0.9
    assert (R[ids == 0] == 0).all() and (np.abs(R).sum(1) > 0).all()  # [PAD] embeds to zeros: no relevance
    plain_rows = np.flatnonzero(~d["negated"])
    assert len(plain_rows) >= 10
    top = np.argmax(np.abs(R), 1)
    top_is_sentiment = d["sentiment"][np.arange(len(ids)), top]
    assert top_is_sentiment[plain_rows].mean() >= 0.75, [str(d["text"][k]) for k in plain_rows
                                                         if not top_is_sentiment[k]]
    real = ids != 0
    for k in plain_rows:  # per sentence: sentiment words get more |R| per token than the other words on average
        s, other = d["sentiment"][k], real[k] & ~d["sentiment"][k]
        assert s.any() and other.any()
    per_token = [np.abs(R[k][d["sentiment"][k]]).mean() > np.abs(R[k][real[k] & ~d["sentiment"][k]]).mean()
                 for k in plain_rows]
    assert np.mean(per_token) >= 0.9


# -- board: two heads, two different explanations ----------------------------------------------------------------------
# The value target's square weights (tools/train_board_demo.py WEIGHTS; checked against the shipped targets below).
WEIGHTS = np.array([[100, -20, 10, 5, 5, 10, -20, 100], [-20, -50, -2, -2, -2, -2, -50, -20],
                    [10, -2, -1, -1, -1, -1, -2, 10], [5, -2, -1, -1, -1, -1, -2, 5],
                    [5, -2, -1, -1, -1, -1, -2, 5], [10, -2, -1, -1, -1, -1, -2, 10],
                    [-20, -50, -2, -2, -2, -2, -50, -20], [100, -20, 10, 5, 5, 10, -20, 100]], np.float64)


def lines_through(square):
    """bool [8, 8]: the square and every square on its 8 rays (the only discs a move there can flip lie on them)."""
    r, c = divmod(int(square), 8)
    region = np.zeros((8, 8), bool)
    region[r, c] = True
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rr, cc = r + dr, c + dc
            while (dr or dc) and 0 <= rr < 8 and 0 <= cc < 8:
                region[rr, cc] = True
                rr, cc = rr + dr, cc + dc
    return region


@pytest.fixture(scope="module")
def boards():
    d = data("othello_boards.npz")
    x = d["board"]
    assert x.shape == (16, 3, 8, 8) and not (x[:, 0] * x[:, 1]).any()
    score = (WEIGHTS * (x[:, 0] - x[:, 1])).sum((1, 2))
    np.testing.assert_allclose(np.tanh(score / 60.0), d["value"], atol=1e-6)  # WEIGHTS is the target's table
    return d


@pytest.mark.parametrize("composite", [None, "epsilon"])
def test_board_both_heads_compile_and_explain(boards, composite):
    x = boards["board"]
    ref = plain("othello_net.onnx", {"board": x})
    assert ref["policy"].shape == (16, 64) and ref["value"].shape == (16, 1)
    R = {}
    for head in ("policy", "value"):
        out = explain("othello_net.onnx", {"board": x}, composite, output=head)
        np.testing.assert_allclose(out[head], ref[head], rtol=1e-4, atol=1e-5)
        R[head] = out["relevance_board"]
        assert R[head].shape == x.shape and np.isfinite(R[head]).all()
        assert (np.abs(R[head]).reshape(16, -1).sum(1) > 0).all()
    assert not np.allclose(R["policy"], R["value"], rtol=0.1, atol=1e-3)
    default = explain("othello_net.onnx", {"board": x}, composite)["relevance_board"]  # the first output: policy
    np.testing.assert_array_equal(default, R["policy"])


def test_board_policy_relevance_lies_on_the_lines_of_the_move(boards):
    """Explaining the policy logit of the chosen move: the discs that make it legal (and how much it flips) lie on
    the 8 rays through it, about a third of the board; the value head's relevance has no reason to be there."""
    x = boards["board"]
    policy = explain("othello_net.onnx", {"board": x}, "epsilon", output="policy")
    value = explain("othello_net.onnx", {"board": x}, "epsilon", output="value")
    move = policy["policy"].argmax(1)
    assert x[np.arange(16), 2].reshape(16, 64)[np.arange(16), move].all()  # every chosen move is legal
    region = np.stack([np.broadcast_to(lines_through(m), (3, 8, 8)) for m in move])
    on_policy = positive_share(policy["relevance_board"], region)
    on_value = positive_share(value["relevance_board"], region)
    area = region[:, 0].reshape(16, -1).mean(1)
    assert on_policy.mean() > 0.7 and (on_policy > area + 0.2).mean() >= 0.8, np.round(on_policy, 2)
    assert on_value.mean() < on_policy.mean() - 0.2


def test_board_value_relevance_follows_the_square_weights(boards):
    """The value target is tanh(sum of square weight x (own - opponent)): the value head's relevance per occupied
    square must correlate with that square's term (a corner owned: positive), the policy head's must not."""
    x = boards["board"]
    terms = WEIGHTS * (x[:, 0] - x[:, 1])
    occupied = (x[:, 0] + x[:, 1]) > 0
    corr = {}
    for head in ("value", "policy"):
        R = explain("othello_net.onnx", {"board": x}, "epsilon", output=head)["relevance_board"]
        r = R[:, 0] + R[:, 1]
        corr[head] = np.array([np.corrcoef(r[k][occupied[k]], terms[k][occupied[k]])[0, 1] for k in range(16)])
    assert np.median(corr["value"]) > 0.8 and (corr["value"] > 0.5).mean() >= 0.6, np.round(corr["value"], 2)
    assert np.median(corr["policy"]) < 0.4
