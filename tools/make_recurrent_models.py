"""Small seeded recurrent classifiers for tests/test_recurrent.py: torch nn.LSTM / nn.GRU exported as the ONNX ops,
and the same weights written out as cells (two Linear maps, chunk, sigmoid/tanh, products) as people write them by
hand.

    python tools/make_recurrent_models.py        # needs the `reference` extra (torch)

models/recurrent/<cell>_<layers>l[_bi]_<bf|tf>.onnx: `x` [N, T, I] (batch-first, dynamic N) or [T, N, I]
(time-first, fixed N; `_tfdyn`: the batch dynamic at axis 1), logits [N, classes] from a Linear on the last step's output. `<cell>_cells_bf.onnx`: the
1-layer batch-first model's weights as hand-written cells with zero initial states built at run time.
`*_state.onnx`: an LSTM that takes its initial states as inputs h0, c0 [layers, N, H] (batch at axis 1).
Zero biases (`_nobias`) for the conservation test. `*_per_step_bf.onnx`: a score per step, logits [N, T, classes]. The test reads the weights out of the ONNX ops themselves.
"""
import os
import warnings

import torch

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "recurrent")
I, H, T, CLASSES, N_FIXED = 5, 7, 6, 3, 2


class Recurrent(torch.nn.Module):
    def __init__(self, cell, layers, bidirectional, batch_first, bias=True, states=False, per_step=False):
        super().__init__()
        self.per_step = per_step
        self.rnn = cell(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias)
        self.fc = torch.nn.Linear(H * (2 if bidirectional else 1), CLASSES, bias=bias)
        self.batch_first, self.states = batch_first, states

    def forward(self, x, *state):
        y, _ = self.rnn(x, tuple(state) if len(state) > 1 else (state[0] if state else None))
        if self.per_step:  # a score per step: [N, T, classes], as a recognizer's
            return self.fc(y)
        return self.fc(y[:, -1] if self.batch_first else y[-1])


class Cells(torch.nn.Module):
    """A 1-layer nn.LSTM's or nn.GRU's weights as two Linear maps, x2h (W, b_ih) and h2h (R, b_hh)."""

    def __init__(self, model, gates):
        super().__init__()
        rnn = model.rnn
        self.x2h, self.h2h = torch.nn.Linear(I, gates * H), torch.nn.Linear(H, gates * H)
        with torch.no_grad():
            self.x2h.weight.copy_(rnn.weight_ih_l0), self.x2h.bias.copy_(rnn.bias_ih_l0)
            self.h2h.weight.copy_(rnn.weight_hh_l0), self.h2h.bias.copy_(rnn.bias_hh_l0)
        self.fc = model.fc


class LSTMCells(Cells):
    """gates = x W^T + b_ih + h R^T + b_hh, torch's gate order i, f, g, o."""

    def __init__(self, model):
        super().__init__(model, 4)

    def forward(self, x):
        h = torch.zeros(x.shape[0], H)
        c = torch.zeros(x.shape[0], H)
        for t in range(x.shape[1]):
            i, f, g, o = (self.x2h(x[:, t]) + self.h2h(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return self.fc(h)


class GRUCells(Cells):
    """torch's gate order r, z, n; the reset gate after R's product."""

    def __init__(self, model):
        super().__init__(model, 3)

    def forward(self, x):
        h = torch.zeros(x.shape[0], H)
        for t in range(x.shape[1]):
            xr, xz, xn = self.x2h(x[:, t]).chunk(3, dim=1)
            hr, hz, hn = self.h2h(h).chunk(3, dim=1)
            r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * n + z * h
        return self.fc(h)


def export(model, path, batch_first, states=0, layers=1, dynamic_time_first=False):
    x = torch.randn(3, T, I) if batch_first else torch.randn(T, N_FIXED, I)
    args = (x,) + tuple(torch.randn(layers, 3, H) for _ in range(states))
    names = ["x"] + ["h0", "c0"][:states]
    dynamic = {"x": {0: "N"}, "logits": {0: "N"}, **{n: {1: "N"} for n in names[1:]}} if batch_first else None
    if dynamic_time_first:  # [T, N, I] with the batch dynamic at axis 1
        dynamic = {"x": {1: "N"}, "logits": {0: "N"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, path, input_names=names, output_names=["logits"],
                          dynamic_axes=dynamic, dynamo=False, opset_version=17)
    print(f"{os.path.relpath(path)}: {os.path.getsize(path)} bytes")


def main():
    os.makedirs(ROOT, exist_ok=True)
    for name, cell in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        for layers, bi, bf in ((1, False, True), (2, False, True), (1, True, True), (2, True, False),
                               (1, False, False)):
            torch.manual_seed(len(name) * 100 + layers * 10 + bi * 2 + bf)
            model = Recurrent(cell, layers, bi, bf)
            tag = f"{name}_{layers}l{'_bi' if bi else ''}_{'bf' if bf else 'tf'}"
            export(model, os.path.join(ROOT, f"{tag}.onnx"), bf)
            if (layers, bi, bf) == (1, False, True):
                cells = (LSTMCells if name == "lstm" else GRUCells)(model)
                export(cells, os.path.join(ROOT, f"{name}_cells_bf.onnx"), True)
        torch.manual_seed(7)
        export(Recurrent(cell, 2, True, True, bias=False), os.path.join(ROOT, f"{name}_2l_bi_bf_nobias.onnx"), True)
    for name, cell in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        torch.manual_seed(17)
        export(Recurrent(cell, 2, True, False), os.path.join(ROOT, f"{name}_2l_bi_tfdyn.onnx"), False,
               dynamic_time_first=True)
    for name, cell, bi in (("lstm", torch.nn.LSTM, True), ("gru", torch.nn.GRU, False)):
        torch.manual_seed(13)
        export(Recurrent(cell, 1, bi, True, per_step=True), os.path.join(ROOT, f"{name}_per_step_bf.onnx"), True)
    torch.manual_seed(11)
    export(Recurrent(torch.nn.LSTM, 2, False, True, states=True), os.path.join(ROOT, "lstm_2l_bf_state.onnx"), True,
           states=2, layers=2)
    torch.manual_seed(19)
    export(Recurrent(torch.nn.LSTM, 2, False, True, bias=False, states=True),
           os.path.join(ROOT, "lstm_2l_bf_state_nobias.onnx"), True, states=2, layers=2)


if __name__ == "__main__":
    main()
