"""Learn the shapes ONNX shape inference leaves unknown by running the model twice, with two batch sizes.

Exports with a dynamic batch compute their Reshape targets at run time (`Shape -> Gather -> Unsqueeze -> Concat`),
and shape inference then loses most intermediate shapes of a transformer although only the batch varies. Run with
batches 2 and 3 in onnxruntime, every tensor shows its real shape: a dim equal in both runs is static, the others
follow the batch. Only done when some tensor's shape is unknown, and only on models whose inputs are fixed
except for the batch.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper

from ..load import batch_axes, tensor_shapes, tensor_types
from .base import Pass

_PROBE_BATCHES = (2, 3)


class ProbeShapes(Pass):
    name = "probe-shapes"

    def run(self, model, notes):
        graph = model.graph
        shapes = tensor_shapes(graph)
        weights = {i.name for i in graph.initializer}
        outputs = [o for n in graph.node for o in n.output if o]
        unknown = [o for o in outputs if o not in shapes or any(d is None for d in shapes[o][1:])]
        inputs = [i for i in graph.input if i.name not in weights]
        axes = batch_axes(graph)
        if not unknown or any(d is None for i in inputs for k, d in enumerate(shapes.get(i.name) or [None, None])
                              if k != axes.get(i.name, 0)):
            return
        runs = [self._run(model, outputs, inputs, batch, axes) for batch in _PROBE_BATCHES]
        if any(r is None for r in runs):
            return
        types = tensor_types(graph)
        probed = []
        for name, a, b in zip(outputs, *runs):
            dims = [_dim(x, y, f"{name}_{k}") for k, (x, y) in enumerate(zip(a.shape, b.shape))] \
                if a.ndim == b.ndim else None
            elem = types.get(name) or (helper.np_dtype_to_tensor_dtype(a.dtype) if a.dtype.kind in "fiub" else None)
            if dims is not None and elem:  # (an inlined branch's tensors have no type yet: the run's dtype)
                probed.append(helper.make_tensor_value_info(name, elem, dims))
        keep = [vi for vi in graph.value_info if vi.name not in {p.name for p in probed}]
        del graph.value_info[:]
        graph.value_info.extend(keep + probed)

    def _run(self, model, outputs, inputs, batch, axes):
        import onnxruntime as ort
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        del probe.graph.output[:]
        probe.graph.output.extend(onnx.ValueInfoProto(name=o) for o in outputs)
        rng = np.random.default_rng(0)
        feeds = {}
        for vi in inputs:
            t = vi.type.tensor_type
            shape = [d.dim_value for d in t.shape.dim]
            if shape and not shape[axes.get(vi.name, 0)]:  # (a fixed batch is fed as it is: all dims then static)
                shape[axes.get(vi.name, 0)] = batch
            dtype = helper.tensor_dtype_to_np_dtype(t.elem_type)
            feeds[vi.name] = (rng.normal(size=shape).astype(dtype) if t.elem_type in _FLOATS
                              else np.ones(shape, dtype))
        try:
            session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
            return [np.asarray(v) for v in session.run(None, feeds)]
        except Exception:  # noqa: BLE001 - the model's own shapes stay as inference left them
            return None


def _dim(first, second, unique):
    """A static size, "N" (the batch), "N*k" (k per sample, as a flattened [N*L, D]) or a name of its own: runtimes
    take equal names for equal sizes."""
    low, high = _PROBE_BATCHES
    if first == second:
        return first
    if first % low == 0 and second == first // low * high:
        k = first // low
        return "N" if k == 1 else f"N*{k}"
    return unique


_FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
