"""GraphBuilder: appends the relevance pass to a model, one ONNX node at a time.

Every generated node and tensor is named `<scope>/lrp/<hint>` (ONNX Runtime's gradient builder convention), so the
backward pass reads well in Netron and can never collide with a forward name.
"""
import numpy as np
from onnx import helper, numpy_helper

from .errors import OnnxLrpError


class GraphBuilder:
    """Collects new nodes and initializers, and knows the static shape of every forward tensor."""

    def __init__(self, graph, shapes, opset, norm_stabilizer=1e-6):
        self.nodes = []
        self.initializers = []
        self.shapes = shapes  # tensor name -> list of dims (int or None), batch first
        self.opset = opset
        self.norm_stabilizer = norm_stabilizer  # Norm of pooling and residual sums: the composite's stabilizer
        self._used = {n for node in graph.node for n in (*node.input, *node.output, node.name)}
        self._used |= {t.name for t in graph.initializer} | {i.name for i in graph.input}
        self._const_cache = {}
        self.positive_part = {}  # z -> relu(z), where a stabilized z may read relu(z) + eps (vanishing.py)
        self.products = {}  # r -> (x, q) for a relevance written as r = x * q (see `scaled`)

    def fresh(self, scope, hint):
        base = f"{scope}/lrp/{hint}"
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def op(self, op_type, inputs, scope, hint=None, outputs=1, **attrs):
        """Append one node; returns its output name (or list of names when outputs > 1)."""
        hint = hint or op_type
        outs = [self.fresh(scope, hint if outputs == 1 else f"{hint}_{k}") for k in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.fresh(scope, f"{hint}_node"),
                                           **attrs))
        return outs[0] if outputs == 1 else outs

    def const(self, array, scope, hint, dtype=np.float32):
        """An initializer holding `array` (computed at compile time); identical requests share one tensor."""
        array = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        key = (scope, hint, array.dtype.str, array.shape, array.tobytes())
        if key not in self._const_cache:
            name = self.fresh(scope, hint)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._const_cache[key] = name
        return self._const_cache[key]

    def scalar(self, value, scope="onnx_lrp", dtype=np.float32):
        return self.const(np.array(value, dtype=dtype), scope, f"const_{np.dtype(dtype).name}_{value}", dtype)

    def static_shape(self, name, node=None):
        """The shape of a forward tensor without its batch dim; fails clearly when shape inference left a hole."""
        dims = self.shapes.get(name)
        if dims is None or any(d is None for d in dims[1:]):
            where = f" (input of node '{node.name}', op {node.op_type})" if node is not None else ""
            raise OnnxLrpError(f"tensor '{name}'{where} has no static shape {dims}; onnx-lrp needs every "
                               "dimension except the batch to be known. Export with fixed input sizes.")
        return list(dims)

    # -- small compound helpers shared by the emitters -------------------------------------------------------------
    def stabilize(self, z, eps, scope):
        """Zennit's stabilizer z + eps * sign0(z), with sign0(0) = +1, so a denominator is never zero. Written as
        eps - 2 eps * (z < 0), exactly +-eps: onnxruntime runs Cast and Mul faster than a Where on scalars."""
        negative = self.op("Cast", [self.op("Less", [z, self.scalar(0.0)], scope, "is_negative")], scope,
                           "negative", to=1)
        shift = self.op("Add", [self.op("Mul", [negative, self.scalar(-2.0 * eps)], scope, "minus_two_eps"),
                                self.scalar(eps)], scope, "eps_signed")
        return self.op("Add", [z, shift], scope, "stabilized")

    def scaled(self, x, q, scope, hint):
        """x * q, remembered: a relevance of this form divided by a stabilized x needs no sign (divide_stabilized)."""
        out = self.op("Mul", [x, q], scope, hint)
        self.products[out] = (x, q)
        return out

    def divide_stabilized(self, r, z, eps, scope, non_negative=False):
        """r / s(z); with eps == 0 (LRP-0) a zero z passes nothing instead of producing NaN. non_negative: z >= 0 by
        construction (W+ a+ + W- a-, ...), where s(z) is z + eps: one Add instead of the sign's four ops. A relevance
        r = z * q (a residual sum's share, an input's contribution, `scaled`) divides as q * |z| / (|z| + eps), the
        same value without the sign (ResNet's convs before a residual sum, under epsilon)."""
        if eps > 0 and (non_negative or z in self.positive_part):
            base = self.positive_part.get(z, z)  # relu(z) where r vanishes wherever z <= 0 (vanishing.py)
            return self.op("Div", [r, self.op("Add", [base, self.scalar(eps)], scope, "stabilized")], scope, "ratio")
        if eps > 0 and self.products.get(r, (None,))[0] == z:
            magnitude = self.op("Abs", [z], scope, "magnitude")
            kept = self.op("Div", [magnitude, self.op("Add", [magnitude, self.scalar(eps)], scope, "stabilized")],
                           scope, "kept_share")
            return self.op("Mul", [self.products[r][1], kept], scope, "ratio")
        if eps > 0:
            return self.op("Div", [r, self.stabilize(z, eps, scope)], scope, "ratio")
        is_zero = self.op("Equal", [z, self.scalar(0.0)], scope, "is_zero")
        safe = self.op("Where", [is_zero, self.scalar(1.0), z], scope, "safe_denominator")
        return self.op("Where", [is_zero, self.scalar(0.0), self.op("Div", [r, safe], scope, "quotient")],
                       scope, "ratio")

    def reduce(self, op_type, x, axes, scope, hint, keepdims=1):
        """ReduceSum/ReduceMean over constant axes (an input from opset 18, and for ReduceSum from 13)."""
        axes = [int(a) for a in axes]
        if op_type == "ReduceSum" and self.opset >= 13 or self.opset >= 18:
            return self.op(op_type, [x, self.const(np.array(axes, np.int64), scope, f"{hint}_axes", np.int64)],
                           scope, hint, keepdims=keepdims)
        return self.op(op_type, [x], scope, hint, axes=axes, keepdims=keepdims)

    def unbroadcast(self, g, x, out, scope, batch_only=False):
        """The adjoint of broadcasting `x` to `out`'s shape: sum the gradient `g` over the broadcast axes
        (batch_only: a MatMul's, where only the axes before the last two broadcast)."""
        xs, outs = self.shapes.get(x), self.shapes.get(out)
        if batch_only and xs is not None and outs is not None:
            outs = outs[:-2] + xs[-2:]
        if xs is None or outs is None:
            raise OnnxLrpError(f"tensor '{x}' or '{out}' has no known rank; onnx-lrp needs it to route the "
                               "gradient of a broadcast. Fix the input sizes with --input-shape.")
        lead = len(outs) - len(xs)
        axes = list(range(lead)) + [i + lead for i, d in enumerate(xs) if d == 1 and outs[i + lead] != 1]
        if not axes:
            return g
        summed = self.reduce("ReduceSum", g, axes, scope, "unbroadcast")
        return self.op("Reshape", [summed, self.op("Shape", [x], scope, "shape")], scope, "unbroadcast_shape") \
            if lead else summed

    def sum(self, names, scope, hint="sum"):
        """Sum; products of one common factor (a ReLU output's relevance from a residual sum and from the next
        conv: x * q1 + x * q2) are summed as x * (q1 + q2), one pass over memory fewer."""
        if len(names) == 1:
            return names[0]
        factors = {self.products.get(n, (None,))[0] for n in names}
        if len(factors) == 1 and None not in factors:
            return self.scaled(factors.pop(), self.op("Sum", [self.products[n][1] for n in names], scope,
                                                      f"{hint}_factor"), scope, hint)
        return self.op("Sum", names, scope, hint)

