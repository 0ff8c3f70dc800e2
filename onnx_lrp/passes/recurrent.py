"""Unroll the ONNX recurrent ops (LSTM, GRU, RNN) into their cells, one step per time step, written with ordinary ops
(Split, Gemm, Sigmoid, Tanh, Mul, Add, Concat).

Why: LRP for recurrent nets (Arras et al. 2017, 2019) is a rule per part of the cell, not per op: the gates
(Sigmoid factors) take no relevance and the signal factor takes it all, sums (the cell update c = f*c' + i*g) split
it by contribution, the linear maps use the composite's dense rule. Written out, each part is an op the compiler
already explains by dataflow (gate.py, merge.py, linear.py), so an LSTM op and the same LSTM written as cells by hand
get the same relevance, and the op needs no emitter of its own.

Each step's linear map is one Gemm on the concatenation [x_t, h_{t-1}] with the weights [W; R] and the bias Wb + Rb
(the joint Epsilon rule over input and state, as Arras et al. write it); GRU's candidate with linear_before_reset
keeps its two maps apart, since the reset gate sits between R's product and the sum. A zero initial state (absent,
a zero constant, or zeros built at run time from the input's shape) is left out: it contributes nothing.

Needs a static sequence length; a node this pass cannot unroll is left as it is, and the plan names it with the
reason kept in UNROLL_REFUSALS.
"""
import numpy as np
from onnx import helper, numpy_helper

from ..load import tensor_shapes
from ..ops.registry import attrs_of
from .base import Pass, constant_arrays

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
MAX_UNROLLED_STEPS = 4096
UNROLL_REFUSALS = {}  # node name -> why it was not unrolled (read by the plan's message)


class UnrollRecurrent(Pass):
    name = "unroll-recurrent"

    def run(self, model, notes):
        graph = model.graph
        if not any(n.op_type in RECURRENT_OPS and n.domain in ("", "ai.onnx") for n in graph.node):
            return
        shapes, constants = tensor_shapes(graph), constant_arrays(graph)
        producer = {o: n for n in graph.node for o in n.output if o}
        nodes, unrolled = [], 0
        for node in graph.node:
            if node.op_type not in RECURRENT_OPS or node.domain not in ("", "ai.onnx"):
                nodes.append(node)
                continue
            cell = _Unroller(node, shapes, constants, producer)
            why = cell.refusal()
            if why:
                UNROLL_REFUSALS[node.name] = why
                nodes.append(node)
                continue
            nodes.extend(cell.nodes())
            graph.initializer.extend(cell.initializers)
            unrolled += 1
            notes.append(f"note: {node.op_type} '{node.name}' unrolled into {cell.steps} steps"
                         f"{' x 2 directions' if cell.directions == 2 else ''} (LRP for recurrent cells: gates take "
                         "no relevance, the signal takes it all)")
        if unrolled:
            del graph.node[:]
            graph.node.extend(nodes)


def _zero_state(name, constants, producer):
    """True where the initial state is absent or all zeros (a constant, or ConstantOfShape(0) built at run time)."""
    if not name:
        return True
    if name in constants:
        return not np.any(constants[name])
    node = producer.get(name)
    if node is not None and node.op_type == "ConstantOfShape":
        value = attrs_of(node).get("value")
        return value is None or not np.any(numpy_helper.to_array(value))
    if node is not None and node.op_type in ("Expand", "Tile", "Reshape", "Unsqueeze", "Squeeze", "Identity", "Cast",
                                                  "Slice", "Gather", "Transpose"):
        return _zero_state(node.input[0], constants, producer)
    return False


class _Unroller:
    """Writes one recurrent node as its unrolled cells (ONNX's operator definitions of LSTM, GRU and RNN)."""

    def __init__(self, node, shapes, constants, producer):
        self.node, self.op = node, node.op_type
        self.attrs = attrs_of(node)
        self.constants, self.producer = constants, producer
        self.layout = self.attrs.get("layout", 0)
        x_dims = shapes.get(node.input[0])
        self.steps = x_dims[1 if self.layout else 0] if x_dims and len(x_dims) == 3 else None
        self.direction = self.attrs.get("direction", b"forward").decode()
        self.directions = 2 if self.direction == "bidirectional" else 1
        self.hidden = self.attrs.get("hidden_size")
        self.initializers = []
        self._used, self._consts = set(), {}

    def _input(self, k):
        return self.node.input[k] if len(self.node.input) > k else ""

    def refusal(self):
        node, a = self.node, self.attrs
        if self.steps is None:
            return ("its sequence length is not static; fix it with --input-shape (the time axis of input "
                    f"'{node.input[0]}'), onnx-lrp unrolls recurrent ops step by step")
        if self.steps > MAX_UNROLLED_STEPS:
            return f"{self.steps} time steps; onnx-lrp unrolls at most {MAX_UNROLLED_STEPS}"
        for k, what in ((1, "W"), (2, "R"), (3, "B"), (7, "P")):
            if self._input(k) and self._input(k) not in self.constants:
                return f"its weights {what} are computed at run time; onnx-lrp needs them constant"
        lens = self._input(4)
        if lens and (lens not in self.constants or np.any(self.constants[lens] != self.steps)):
            return ("it takes sequence_lens that vary per sample; onnx-lrp unrolls full-length sequences only "
                    "(pad every sample to the same length and drop sequence_lens)")
        if "clip" in a:
            return "cell clipping (attribute clip) has no relevance rule"
        if a.get("input_forget", 0):
            return "input_forget=1 (coupled input and forget gates) is not supported"
        activations = [s.decode() for s in a.get("activations", [])]
        if activations and activations != DEFAULT_ACTIVATIONS[self.op] * self.directions:
            return f"activations {activations}: only the default {DEFAULT_ACTIVATIONS[self.op]} are supported"
        if "activation_alpha" in a or "activation_beta" in a:
            return "activation_alpha/beta are not supported"
        if self.hidden is None:
            return "it has no hidden_size attribute"
        return None

    # -- small builders --------------------------------------------------------------------------------------------
    def _name(self, hint):
        base = f"{self.node.name}/unrolled/{hint}"
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name

    def _emit(self, op, inputs, hint, outputs=1, out=None, **attrs):
        outs = [out] if out else [self._name(f"{hint}_{k}" if outputs > 1 else hint) for k in range(outputs)]
        self._out.append(helper.make_node(op, inputs, outs, name=self._name(f"{hint}_node"), **attrs))
        return outs if outputs > 1 else outs[0]

    def _const(self, array, hint, dtype=np.float32):
        """An initializer; equal arrays under one hint share it (every step reads the same weights)."""
        array = np.asarray(array, dtype).copy(order="C")  # (ascontiguousarray would make a scalar 1-D)
        key = (hint, array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self._name(hint)
            self.initializers.append(numpy_helper.from_array(array, self._consts[key]))
        return self._consts[key]

    def _axes(self, *axes):
        return self._const(np.array(axes, np.int64), "axes", np.int64)

    def _state(self, k, d):
        """Direction d's initial state from input k ([directions, N, H], or [N, directions, H] with layout 1), or
        None where it is zero."""
        name = self._input(k)
        if _zero_state(name, self.constants, self.producer):
            return None
        axis = 1 if self.layout else 0
        picked = self._emit("Gather", [name, self._const(np.array(d, np.int64), "direction", np.int64)],
                            f"d{d}/initial_{'hc'[k - 5]}", axis=axis)
        return picked

    # -- the unrolled graph -----------------------------------------------------------------------------------------
    def nodes(self):
        self._out = []
        node, T, axis = self.node, self.steps, 1 if self.layout else 0
        x = node.input[0]
        parts = self._emit("Split", [x, self._const(np.ones(T, np.int64), "step_sizes", np.int64)], "x_step",
                           outputs=T, axis=axis) if T > 1 else [x]
        xs = [self._emit("Squeeze", [p, self._axes(axis)], f"x_{t}") for t, p in enumerate(parts)]
        W, R = self.constants[node.input[1]], self.constants[node.input[2]]
        G, H = GATES[self.op], self.hidden
        B = self.constants[self._input(3)] if self._input(3) else np.zeros((self.directions, 2 * G * H), np.float32)
        P = self.constants[self._input(7)] if self._input(7) else None
        hs, finals = [], []
        for d in range(self.directions):
            reverse = self.direction == "reverse" or d == 1
            order = range(T - 1, -1, -1) if reverse else range(T)
            cell = getattr(self, f"_{self.op.lower()}_step")
            h, c = self._state(5, d), self._state(6, d) if self.op == "LSTM" else None
            per_step = [None] * T
            for t in order:
                h, c = cell(d, t, xs[t], h, c, W[d], R[d], B[d], None if P is None else P[d])
                per_step[t] = h
            hs.append(per_step)
            finals.append((h, c))
        self._outputs(hs, finals)
        return self._out

    def _gates(self, d, t, x, h, w, r, b, rows):
        """x W[rows]^T + h R[rows]^T + Wb[rows] + Rb[rows], one Gemm on [x, h] (h None: a zero state)."""
        G, H = GATES[self.op], self.hidden
        bias = b[rows] + b[G * H:][rows]
        if h is None:
            return self._emit("Gemm", [x, self._const(w[rows].T, f"d{d}/W_T"), self._const(bias, f"d{d}/bias")],
                              f"d{d}/t{t}/gates")
        joined = self._emit("Concat", [x, h], f"d{d}/t{t}/input_and_state", axis=1)
        weight = np.concatenate([w[rows], r[rows]], axis=1).T
        return self._emit("Gemm", [joined, self._const(weight, f"d{d}/WR_T"), self._const(bias, f"d{d}/bias")],
                          f"d{d}/t{t}/gates")

    def _split(self, gates, d, t, names):
        return self._emit("Split", [gates], f"d{d}/t{t}/{'_'.join(names)}", outputs=len(names), axis=1) \
            if len(names) > 1 else [gates]

    def _lstm_step(self, d, t, x, h, c, w, r, b, p):
        H, s = self.hidden, f"d{d}/t{t}"
        gi, go, gf, gc = self._split(self._gates(d, t, x, h, w, r, b, slice(0, 4 * H)), d, t, "iofc")
        if p is not None and c is not None:  # peepholes on the previous cell state (none on a zero state)
            gi = self._emit("Add", [gi, self._emit("Mul", [c, self._const(p[:H], f"d{d}/P_i")], f"{s}/peep_i")],
                            f"{s}/i_peeped")
            gf = self._emit("Add", [gf, self._emit("Mul", [c, self._const(p[2 * H:], f"d{d}/P_f")],
                                                   f"{s}/peep_f")], f"{s}/f_peeped")
        i = self._emit("Sigmoid", [gi], f"{s}/input_gate")
        g = self._emit("Tanh", [gc], f"{s}/candidate")
        new = self._emit("Mul", [i, g], f"{s}/gated_candidate")
        # a zero cell state still enters the sum (as zeros built at run time, which no input value reaches), so the
        # update splits its relevance with the stabilizer at every step, as Arras et al.'s rule and hand-written
        # cells do
        c = self._zero_state_like(x, d) if c is None else c
        f = self._emit("Sigmoid", [gf], f"{s}/forget_gate")
        new = self._emit("Add", [self._emit("Mul", [f, c], f"{s}/kept_cell"), new], f"{s}/cell")
        if p is not None:
            go = self._emit("Add", [go, self._emit("Mul", [new, self._const(p[H:2 * H], f"d{d}/P_o")],
                                                   f"{s}/peep_o")], f"{s}/o_peeped")
        o = self._emit("Sigmoid", [go], f"{s}/output_gate")
        return self._emit("Mul", [o, self._emit("Tanh", [new], f"{s}/cell_tanh")], f"{s}/hidden"), new

    def _gru_step(self, d, t, x, h, c, w, r, b, p):
        H, s = self.hidden, f"d{d}/t{t}"
        if h is None:  # zeros built at run time, which depend on no input value: r * (0 R^T + Rb) is a bias
            h = self._zero_state_like(x, d)
        zr = self._split(self._gates(d, t, x, h, w, r, b, slice(0, 2 * H)), d, t, "zr")
        z = self._emit("Sigmoid", [zr[0]], f"{s}/update_gate")
        rows = slice(2 * H, 3 * H)
        wb, rb = b[rows], b[3 * H:][rows]
        if self.attrs.get("linear_before_reset", 0):
            reset = self._emit("Sigmoid", [zr[1]], f"{s}/reset_gate")
            from_x = self._emit("Gemm", [x, self._const(w[rows].T, f"d{d}/Wn_T"), self._const(wb, f"d{d}/Wnb")],
                                f"{s}/candidate_input")
            from_h = self._emit("Gemm", [h, self._const(r[rows].T, f"d{d}/Rn_T"), self._const(rb, f"d{d}/Rnb")],
                                f"{s}/candidate_state")
            inner = self._emit("Add", [from_x, self._emit("Mul", [reset, from_h], f"{s}/reset_state")],
                               f"{s}/candidate_sum")
        else:
            reset = self._emit("Sigmoid", [zr[1]], f"{s}/reset_gate")
            joined = self._emit("Concat", [x, self._emit("Mul", [reset, h], f"{s}/reset_state")],
                                f"{s}/input_and_reset_state", axis=1)
            weight = np.concatenate([w[rows], r[rows]], axis=1).T
            inner = self._emit("Gemm", [joined, self._const(weight, f"d{d}/WRn_T"),
                                        self._const(wb + rb, f"d{d}/nbias")], f"{s}/candidate_sum")
        n = self._emit("Tanh", [inner], f"{s}/candidate")
        keep = self._emit("Sub", [self._const(np.float32(1), "one"), z], f"{s}/one_minus_update")
        new = self._emit("Mul", [keep, n], f"{s}/gated_candidate")
        new = self._emit("Add", [new, self._emit("Mul", [z, h], f"{s}/kept_state")], f"{s}/hidden")
        return new, None

    def _zero_state_like(self, x, d):
        batch = self._emit("Shape", [x], f"d{d}/batch", start=0, end=1)
        shape = self._emit("Concat", [batch, self._const(np.array([self.hidden], np.int64), "hidden", np.int64)],
                           f"d{d}/state_shape", axis=0)
        return self._emit("ConstantOfShape", [shape], f"d{d}/zero_state",
                          value=numpy_helper.from_array(np.zeros(1, np.float32)))

    def _rnn_step(self, d, t, x, h, c, w, r, b, p):
        return self._emit("Tanh", [self._gates(d, t, x, h, w, r, b, slice(0, self.hidden))], f"d{d}/t{t}/hidden"), None

    def _outputs(self, hs, finals):
        """Y [T, D, N, H] (layout 1: [N, T, D, H]), Y_h and Y_c [D, N, H] (layout 1: [N, D, H])."""
        node, D = self.node, self.directions
        dir_axis = 2 if self.layout else 1
        state_axis = 1 if self.layout else 0
        time_axis = 1 if self.layout else 0
        outs = list(node.output) + [""] * (3 - len(node.output))
        if outs[0]:
            steps = []
            for t in range(self.steps):
                per_dir = [self._emit("Unsqueeze", [hs[d][t], self._axes(dir_axis - 1 if self.layout else 0)],
                                      f"y/t{t}/d{d}") for d in range(D)]
                stacked = per_dir[0] if D == 1 else self._emit("Concat", per_dir, f"y/t{t}/directions",
                                                                axis=1 if self.layout else 0)
                steps.append(self._emit("Unsqueeze", [stacked, self._axes(time_axis)], f"y/t{t}"))
            self._join(steps, outs[0], "y", time_axis)
        for k, out in ((0, outs[1]), (1, outs[2])):
            if not out:
                continue
            per_dir = [self._emit("Unsqueeze", [finals[d][k], self._axes(state_axis)], f"{'hc'[k]}/d{d}")
                       for d in range(D)]
            self._join(per_dir, out, f"y_{'hc'[k]}", state_axis)

    def _join(self, parts, out, hint, axis):
        """Concat into the node's own output name (one part: its producer writes that name)."""
        if len(parts) > 1:
            self._emit("Concat", parts, hint, out=out, axis=axis)
            return
        producer = next(n for n in self._out if parts[0] in n.output)
        producer.output[list(producer.output).index(parts[0])] = out
