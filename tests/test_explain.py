"""The explain workflow: onnx_lrp.Explainer, `onnx-lrp explain` (arrays, images, folders, tables, tokens, bias
relevance) and `onnx-lrp inspect`, checked against the compiled graph run directly with onnxruntime."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from conftest import MODELS, run
from onnx_lrp.cli import main
from onnx_lrp.explain import Explainer

DEMO = os.path.join(MODELS, "demo")


def direct(path, x, target, composite=None, **options):
    """Relevance and output from the compiled graph run by hand: the reference the Explainer must reproduce."""
    compiled = onnx_lrp.compile(path, composite, **options)
    name = next(i.name for i in compiled.graph.input if i.name != "target")
    return run(compiled, {name: x, "target": target})


def test_explainer_matches_the_compiled_graph_and_batches(rng):
    path = os.path.join(MODELS, "minivgg_cifar10.onnx")
    x = rng.normal(size=(7, 3, 32, 32)).astype(np.float32)
    ref = direct(path, x, np.full(7, -1, np.int64))
    explainer = Explainer(path, providers="cpu", batch_size=3)
    options = explainer.session.get_session_options()  # onnx_lrp.session_options(): weights and activations held once
    assert not options.enable_mem_pattern and options.get_session_config_entry("session.disable_prepacking") == "1"
    explanation = explainer.explain(x)
    np.testing.assert_allclose(explanation.relevance, ref["relevance_input"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explanation.output, ref["probabilities"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(explanation.target, ref["probabilities"].argmax(1))
    np.testing.assert_array_equal(explanation.prediction, ref["probabilities"].argmax(1))
    chosen = Explainer(path, "epsilon", epsilon=0.1, providers="cpu").explain(x, target=[1, 2, 3, 4, 5, 6, 7])
    ref = direct(path, x, np.arange(1, 8), "epsilon", epsilon=0.1)
    np.testing.assert_allclose(chosen.relevance, ref["relevance_input"], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(chosen.target, np.arange(1, 8))


def test_explainer_takes_a_compiled_model_and_refuses_new_rules_for_it(rng, tmp_path):
    path = os.path.join(MODELS, "mlp_tabular.onnx")
    compiled = onnx_lrp.compile(path, "epsilon")
    x = rng.normal(size=(4, *[d.dim_value for d in compiled.graph.input[0].type.tensor_type.shape.dim[1:]]))
    x = x.astype(np.float32)
    from_proto = Explainer(compiled, providers="cpu").explain(x, target=0)
    onnx_lrp.write_model(compiled, str(tmp_path / "m.lrp.onnx"))
    from_file = Explainer(str(tmp_path / "m.lrp.onnx"), providers="cpu")
    assert from_file.composite == "epsilon" and from_file.layer_names == []  # compiled without layer sums
    np.testing.assert_array_equal(from_file.explain(x, target=0).relevance, from_proto.relevance)
    np.testing.assert_array_equal(from_proto.target, np.zeros(4))
    with pytest.raises(onnx_lrp.OnnxLrpError, match="compiled already .composite 'epsilon'.; pass the original"):
        Explainer(compiled, "epsilon-plus")


def test_layer_sums_chain_from_the_seed_to_the_input_relevance(rng):
    """Per linear layer: relevance at its output and input. In an MLP the ReLUs pass relevance on, so each layer's
    input sum is the next one's output sum, the last output sum is the seed (the logit) and the first input sum is
    the input relevance; the biases absorb the differences."""
    path = os.path.join(DEMO, "breast_cancer_mlp.onnx")
    x = np.load(os.path.join(DEMO, "breast_cancer_test.npz"))["x"]
    e = Explainer(path, "epsilon", providers="cpu").explain(x)
    sums = np.stack(list(e.layer_sums.values()), axis=1)  # [N, layers, (in, out)]
    assert sums.shape == (len(x), 3, 2)
    logit = e.output[np.arange(len(x)), e.target]
    np.testing.assert_allclose(sums[:, -1, 1], logit, rtol=1e-5)
    np.testing.assert_allclose(sums[:, :-1, 1], sums[:, 1:, 0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sums[:, 0, 0], e.relevance.sum(1), rtol=1e-4, atol=1e-5)
    bias = e.bias_relevance
    assert list(bias) == list(e.layer_sums) and any(np.abs(v).max() > 1e-3 for v in bias.values())


def test_layer_relevance_output_is_the_relevance_at_that_node(rng):
    path = os.path.join(DEMO, "digits_cnn.onnx")
    x = np.load(os.path.join(DEMO, "digits_test.npz"))["x"][:5]
    model = onnx.load(path)
    last = [n.name for n in model.graph.node if n.op_type == "Gemm"][-1]
    e = Explainer(path, "epsilon", providers="cpu", layer_relevance=[last]).explain(x)
    at = e.at[last]  # the seed: one_hot(target) * logit
    expected = np.zeros_like(e.output)
    expected[np.arange(5), e.target] = e.output[np.arange(5), e.target]
    np.testing.assert_allclose(at, expected, rtol=1e-6)
    with pytest.raises(onnx_lrp.OnnxLrpError, match="--layer-relevance 'nothing\\*' matches no node"):
        onnx_lrp.compile(path, layer_relevance=["nothing*"])


def test_cuda_is_loud_when_absent_and_auto_is_quiet():
    import onnxruntime as ort
    path = os.path.join(MODELS, "mlp_tabular.onnx")
    try:
        explainer = Explainer(path, providers="cuda")
    except onnx_lrp.OnnxLrpError as exc:
        assert "CUDA was asked for" in str(exc)
    else:  # a machine where CUDA attaches
        assert explainer.providers[0] == "CUDAExecutionProvider"
    code = ("import onnx_lrp; e = onnx_lrp.Explainer(%r, providers='auto'); print(e.providers[0])" % path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no onnxruntime CUDA load errors on a machine without CUDA
    assert done.stdout.strip() in ort.get_available_providers()


def test_cli_explain_arrays_writes_relevance_heatmaps_and_bias_report(tmp_path, capsys):
    path = os.path.join(DEMO, "digits_cnn.onnx")
    data = os.path.join(DEMO, "digits_test.npz")
    assert main(["explain", path, data, "--out", str(tmp_path), "--composite", "epsilon-plus"]) == 0
    out = capsys.readouterr().out
    x = np.load(data)["x"]
    ref = direct(path, x, np.full(len(x), -1, np.int64), "epsilon-plus")
    lines = [line for line in out.splitlines() if line.startswith("digits_test_")]
    assert len(lines) == len(x)
    top = ref["logits"].argmax(1)
    assert lines[3] == (f"digits_test_3: predicted {top[3]}, explained {top[3]} (score {ref['logits'][3, top[3]]:.4g})"
                        f", relevance sum {ref['relevance_input'][3].sum():.4g}")
    np.testing.assert_allclose(np.load(tmp_path / "digits_test_3.relevance.npy"), ref["relevance_input"][3],
                               rtol=1e-5, atol=1e-7)
    from PIL import Image
    heat = np.asarray(Image.open(tmp_path / "digits_test_3.heatmap.png"))
    assert heat.shape == (256, 256, 3) and len(np.unique(heat.reshape(-1, 3), axis=0)) > 4
    assert "bias relevance per linear layer" in out and out.count("/Conv") >= 2


def test_cli_explain_image_folder_with_overlay_and_target(tmp_path, capsys):
    from PIL import Image
    rng = np.random.default_rng(1)
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    Image.fromarray(pixels[::-1]).save(folder / "b.jpg", quality=95)
    np.save(folder / "c.npy", rng.normal(size=(3, 32, 32)).astype(np.float32))
    path = os.path.join(MODELS, "minivgg_cifar10.onnx")
    args = ["explain", path, str(folder), "--out", str(tmp_path / "out"), "--target", "4",
            "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--batch-size", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert sum(" explained 4 " in line for line in out.splitlines()) == 3
    resized = np.asarray(Image.fromarray(pixels).resize((32, 32), Image.BILINEAR), np.float32)
    x = ((resized / 255 - 0.5) / 0.25).transpose(2, 0, 1)[None]
    ref = direct(path, x.astype(np.float32), np.array([4]))
    np.testing.assert_allclose(np.load(tmp_path / "out" / "a.relevance.npy"), ref["relevance_input"][0],
                               rtol=1e-4, atol=1e-6)
    overlay = np.asarray(Image.open(tmp_path / "out" / "a.overlay.png"))
    assert overlay.shape[0] == 256 and overlay.shape[1] > 2 * 256  # picture and overlay side by side
    assert (tmp_path / "out" / "c.heatmap.png").exists() and (tmp_path / "out" / "b.overlay.png").exists()


def test_cli_explain_table_ranks_named_features_and_draws_a_bar_chart(tmp_path, capsys):
    path = os.path.join(DEMO, "breast_cancer_mlp.onnx")
    names = os.path.join(DEMO, "breast_cancer_features.json")
    x = np.load(os.path.join(DEMO, "breast_cancer_test.npz"))["x"][:2]
    np.save(tmp_path / "rows.npy", x)
    assert main(["explain", path, str(tmp_path / "rows.npy"), "--out", str(tmp_path / "out"), "--composite",
                 "epsilon", "--feature-names", names]) == 0
    out = capsys.readouterr().out
    r = direct(path, x, np.full(2, -1, np.int64), "epsilon")["relevance_features"][0]
    feature_names = json.load(open(names))["features"]
    best = int(np.argmax(r))
    block = out.split("rows_0:")[1].split("rows_1:")[0]
    assert block.splitlines()[2].strip() == f"{r[best]:+.4g}  {feature_names[best]}"  # first ranked = top feature
    assert (tmp_path / "out" / "rows_0.features.png").stat().st_size > 5000


def test_cli_explain_tokens_with_vocab(tmp_path, capsys):
    path = os.path.join(DEMO, "review_classifier.onnx")
    data = np.load(os.path.join(DEMO, "review_test.npz"))
    np.savez(tmp_path / "reviews.npz", input_ids=data["input_ids"][:3])
    vocab = os.path.join(DEMO, "review_vocab.json")
    assert main(["explain", path, str(tmp_path / "reviews.npz"), "--out", str(tmp_path / "out"), "--composite",
                 "epsilon", "--vocab", vocab]) == 0
    out = capsys.readouterr().out
    ref = direct(path, data["input_ids"][:3], np.full(3, -1, np.int64), "epsilon")["relevance_input_ids"]
    words = json.load(open(vocab))["tokens"]
    first = [words[t] for t in data["input_ids"][0] if t != 0]
    tokens_line = next(line for line in out.splitlines() if line.startswith("  tokens: "))
    assert [t.split("(")[0] for t in tokens_line[len("  tokens: "):].split(" ")] == first
    best = int(np.argmax(ref[0]))
    assert f"most positive: {words[data['input_ids'][0][best]]} {ref[0][best]:+.3g}" in out
    page = (tmp_path / "out" / "reviews_0.tokens.html").read_text()
    assert page.count("<span") == len(first)


def test_cli_explain_board_heads(tmp_path, capsys):
    path = os.path.join(DEMO, "othello_net.onnx")
    boards = np.load(os.path.join(DEMO, "othello_boards.npz"))["board"][:2]
    np.save(tmp_path / "boards.npy", boards)
    assert main(["explain", path, str(tmp_path / "boards.npy"), "--out", str(tmp_path / "v"), "--output", "value",
                 "--composite", "epsilon"]) == 0
    assert main(["explain", path, str(tmp_path / "boards.npy"), "--out", str(tmp_path / "p"), "--output", "policy",
                 "--target", "19", "--composite", "epsilon"]) == 0
    out = capsys.readouterr().out
    assert out.count("boards_0: score ") == 1 and out.count("explained 19 (score") == 2  # a value head has no class
    value = np.load(tmp_path / "v" / "boards_0.relevance.npy")
    policy = np.load(tmp_path / "p" / "boards_0.relevance.npy")
    ref = direct(path, boards, np.array([19, 19]), "epsilon", output="policy")["relevance_board"][0]
    np.testing.assert_allclose(policy, ref, rtol=1e-5, atol=1e-7)
    assert value.shape == policy.shape == boards.shape[1:] and not np.allclose(value, policy)
    assert out.count("bias relevance per linear layer") == 2


def test_cli_explain_errors_name_the_file(tmp_path, capsys):
    path = os.path.join(DEMO, "digits_cnn.onnx")
    np.savez(tmp_path / "wrong.npz", a=np.zeros((2, 5)), b=np.zeros(3))
    assert main(["explain", path, str(tmp_path / "wrong.npz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "wrong.npz: the .npz holds a, b; it needs an array for each model input (input)" in err
    np.savez(tmp_path / "two.npz", first=np.zeros((2, 1, 8, 8), np.float32), second=np.ones((1, 8, 8), np.float32))
    assert main(["explain", path, str(tmp_path / "two.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "first, second fit the input: choose one with FILE.npz:KEY" in capsys.readouterr().err
    assert main(["explain", path, str(tmp_path / "two.npz") + ":second", "--out", str(tmp_path / "k")]) == 0
    assert sorted(os.listdir(tmp_path / "k")) == ["index.jsonl", "two.heatmap.png", "two.input.png",
                                                  "two.relevance.npy"]
    capsys.readouterr()
    assert main(["explain", path, str(tmp_path / "missing.npy"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.npy: input not found" in capsys.readouterr().err
    compiled = tmp_path / "d.lrp.onnx"
    assert main(["compile", path, "-o", str(compiled)]) == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8), np.float32))
    assert main(["explain", str(compiled), str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"), "--composite",
                 "epsilon"]) == 2
    assert "compiled already; --composite apply only to a plain model" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written on failure


def test_cli_inspect_lists_rules_and_every_unsupported_node(tmp_path, capsys):
    assert main(["inspect", os.path.join(MODELS, "minivgg_cifar10.onnx"), "--composite", "epsilon-gamma-box",
                 "--low", "-1", "--high", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("/")}
    assert "z-box(low=-1.0,high=1.0" in rows["/0/0.0/Conv"] and "gamma(gamma=0.25" in rows["/0/0.2/Conv"]
    assert "[N, 3, 32, 32]" in rows["/0/0.0/Conv"] and "winner-takes-all" in rows["/0/0.4/MaxPool"]
    assert "every node is supported" in out

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
         helper.make_node("Sin", ["h"], ["s"], name="wave"),
         helper.make_node("TopK", ["s", "k"], ["v", "i"], name="top", axis=1),
         helper.make_node("Hardmax", ["v"], ["y"], name="hard")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [w, numpy_helper.from_array(np.array([2], np.int64), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "odd.onnx")
    assert main(["inspect", str(tmp_path / "odd.onnx")]) == 1
    out = capsys.readouterr().out
    assert "node(s) cannot be compiled" in out and "'top'" in out and "'hard'" in out
    assert any(line.startswith("dense ") for line in out.splitlines())


def test_cli_explain_runs_batch_by_batch_with_the_same_results(tmp_path, capsys):
    """Inputs are read and explained one batch at a time (a folder of any size fits in memory): a batch size that
    does not divide the inputs gives the same files and the same bias table (a mean over every input)."""
    path = os.path.join(DEMO, "digits_cnn.onnx")
    data = os.path.join(DEMO, "digits_test.npz")
    outputs = {}
    for size in ("7", "64"):
        assert main(["explain", path, data, "--out", str(tmp_path / size), "--batch-size", size]) == 0
        out = capsys.readouterr().out
        outputs[size] = out
        assert "wrote the results of 50 input(s)" in out
    table = [o.split("bias relevance per linear layer")[1].split("wrote the results")[0] for o in outputs.values()]
    numbers = [np.array([[float(v) for v in line.split()[1:]] for line in t.splitlines()[2:] if line.strip()])
               for t in table]  # rows: output, input, absorbed (a difference: compared to the output's scale)
    assert numbers[0].shape == (4, 3)
    np.testing.assert_allclose(numbers[0][:, :2], numbers[1][:, :2], rtol=1e-4)
    np.testing.assert_allclose(numbers[0][:, 2], numbers[1][:, 2], atol=1e-4 * np.abs(numbers[1][:, 0]).max())
    for name in ("digits_test_0", "digits_test_49"):
        np.testing.assert_allclose(np.load(tmp_path / "7" / f"{name}.relevance.npy"),
                                   np.load(tmp_path / "64" / f"{name}.relevance.npy"), rtol=1e-5, atol=1e-7)
