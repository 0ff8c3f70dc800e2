"""Load and check: read the file safely, refuse what cannot work, upgrade old opsets, infer static shapes."""
import os
from functools import lru_cache

import numpy as np
import onnx
from onnx import shape_inference, version_converter

from .errors import OnnxLrpError

MIN_OPSET = 16  # ScatterElements(reduction="add") for the relevance of Gather at runtime indices
TARGET_OPSET = 17


def _external_locations(model):
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            yield t.name, {e.key: e.value for e in t.external_data}.get("location", "")


def read_model(path):
    """Parse the file; external data is read only from inside the model's own folder."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise OnnxLrpError("file not found. Check the path.", path=path)
    if os.path.isdir(path):
        raise OnnxLrpError("is a folder, not an ONNX file.", path=path)
    if os.path.getsize(path) == 0:
        raise OnnxLrpError("file is empty; it is not an ONNX model. Export the model again.", path=path)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning, ValueError...
        raise OnnxLrpError(f"cannot be parsed as an ONNX model ({type(exc).__name__}: {exc}). "
                           "Is it truncated, or not an .onnx file?", path=path) from None
    if not model.graph.node and not model.graph.output:
        raise OnnxLrpError("holds no ONNX graph (no nodes, no outputs); it is not an ONNX model or it is "
                           "truncated. Export the model again.", path=path)
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    external = list(_external_locations(model))
    for name, location in external:
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.commonpath([folder, target]) != folder:
            raise OnnxLrpError(f"initializer '{name}' keeps its data at '{location}', outside the model's folder "
                               f"{folder}; refused for safety. Move the data file beside the model.", path=path)
        if not os.path.isfile(target):
            raise OnnxLrpError(f"initializer '{name}' keeps its data in '{location}', which does not exist. "
                               "Copy the external data file beside the model.", path=path)
    if external:
        try:
            onnx.load_external_data_for_model(model, folder)
        except Exception as exc:
            raise OnnxLrpError(f"cannot read the external data ({exc}).", path=path) from None
    return model


def fill_interface(model):
    """As lenient as onnxruntime: graph outputs with no type or shape (common after graph surgery) get the inferred
    ones, and dims written as a negative dim_value (paddle2onnx's -1) become symbolic."""
    for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        for k, dim in enumerate(vi.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value < 0:
                dim.dim_param = "N" if k == 0 else f"{vi.name}_dim{k}"
    incomplete = [o for o in model.graph.output
                  if not o.type.tensor_type.elem_type or not o.type.tensor_type.HasField("shape")]
    if not incomplete:
        return
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - the checker below reports what is wrong
        return
    known = {vi.name: vi for vi in (*inferred.graph.output, *inferred.graph.value_info)}
    for output in incomplete:
        if output.name in known and known[output.name].type.tensor_type.elem_type:
            output.type.CopyFrom(known[output.name].type)


def override_input_shapes(model, input_shapes, path=None):
    """Fix input dims, as onnxsim's --overwrite-input-shape: {name: [dim, ...]}, an int fixes a dim, a string keeps
    it symbolic under that name. Then refuse inputs whose dims beyond the batch are still unknown."""
    inputs = {i.name: i for i in model.graph.input}
    for name, dims in (input_shapes or {}).items():
        if name not in inputs:
            raise OnnxLrpError(f"--input-shape names '{name}', which is not a model input; the inputs are: "
                               f"{', '.join(inputs)}", path=path)
        shape = inputs[name].type.tensor_type.shape
        if len(dims) != len(shape.dim):
            raise OnnxLrpError(f"--input-shape gives {len(dims)} dims for input '{name}', which has "
                               f"{len(shape.dim)} ({_dims_text(shape.dim)})", path=path)
        for dim, value in zip(shape.dim, dims):
            dim.Clear()
            if isinstance(value, (int, np.integer)) and value > 0:
                dim.dim_value = int(value)
            elif isinstance(value, str) and value and not value.lstrip("-").isdigit():
                dim.dim_param = value
            else:
                raise OnnxLrpError(f"--input-shape for '{name}': {value!r} is neither a positive size nor a name "
                                   "for a symbolic dim", path=path)
    axes = batch_axes(model.graph)
    symbols = batch_symbols(model.graph)
    weights = {i.name for i in model.graph.initializer}
    for name, vi in inputs.items():
        dims = vi.type.tensor_type.shape.dim
        if name in weights:
            continue
        axis = axes.get(name, 0)
        if any(not d.HasField("dim_value") for k, d in enumerate(dims) if k != axis):
            example = ",".join("N" if k == axis else str(d.dim_value) if d.HasField("dim_value") else "SIZE"
                               for k, d in enumerate(dims))
            where = f"the batch is its dim {axis}; " if axis else ""
            batch = f"the dim named {' or '.join(sorted(symbols))}" if symbols else "dim 0, or an input's one open dim"
            raise OnnxLrpError(f"input '{name}' has dims [{_dims_text(dims)}]: {where}sizes beyond the batch must be "
                               f"known (the batch: {batch}). "
                               f"Fix them with --input-shape {name}={example} (Python: input_shapes={{'{name}': "
                               f"[...]}}); a name instead of a number keeps that dim symbolic.", path=path)


def pin_input_values(model, values, path=None):
    """Make setting inputs constants ({name: value}, a number or a list): the input leaves the interface and
    becomes an initializer of its declared type and shape, so the Ifs it decides fold (passes/control.py)."""
    from onnx import helper, numpy_helper
    inputs = {i.name: i for i in model.graph.input}
    weights = {i.name for i in model.graph.initializer}
    for name, value in (values or {}).items():
        if name not in inputs or name in weights:
            raise OnnxLrpError(f"--input-value names '{name}', which is not a model input; the inputs are: "
                               f"{', '.join(n for n in inputs if n not in weights)}", path=path)
        t = inputs[name].type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") else None
        try:
            array = np.asarray(value, dtype=helper.tensor_dtype_to_np_dtype(t.elem_type))
        except (TypeError, ValueError, KeyError) as exc:
            raise OnnxLrpError(f"--input-value {name}={value!r} does not fit the input's type "
                               f"{onnx.TensorProto.DataType.Name(t.elem_type)} ({exc})", path=path) from None
        if dims is not None and None not in dims and array.size == int(np.prod(dims, dtype=np.int64)):
            array = array.reshape(dims)
        elif dims is not None and (None in dims or array.shape != tuple(dims)):
            raise OnnxLrpError(f"--input-value {name}: {array.size} value(s) for an input of dims "
                               f"[{_dims_text(t.shape.dim)}]; give one value per element of a fixed shape",
                               path=path)
        model.graph.initializer.append(numpy_helper.from_array(array, name))
        kept = [i for i in model.graph.input if i.name != name]
        del model.graph.input[:]
        model.graph.input.extend(kept)


def batch_symbols(graph):
    """The names of the batch dim: the symbolic dim 0 of the inputs and outputs (a state input [layers, N, H] or a
    time-first [T, N, F] carries the same name at another axis)."""
    weights = {i.name for i in graph.initializer}
    values = [i for i in graph.input if i.name not in weights] + list(graph.output)
    return {v.type.tensor_type.shape.dim[0].dim_param for v in values
            if len(v.type.tensor_type.shape.dim) and v.type.tensor_type.shape.dim[0].dim_param}


def batch_axes(graph):
    """{input name: the axis of its batch}: where its one symbolic dim carries a batch name (batch_symbols), or where
    its dim 0 is static and one dim is left open (a state [layers, ?, H]); else 0. Found from the dims the exporter
    wrote, not assumed at dim 0."""
    symbols, weights, axes = batch_symbols(graph), {i.name for i in graph.initializer}, {}
    for vi in graph.input:
        if vi.name in weights:
            continue
        dims = list(vi.type.tensor_type.shape.dim)
        named = [k for k, d in enumerate(dims) if d.dim_param in symbols]
        unknown = [k for k, d in enumerate(dims) if not d.HasField("dim_value")]
        if dims and not dims[0].HasField("dim_value") and (not dims[0].dim_param or 0 in named):
            axes[vi.name] = 0
        elif len(named) == 1:
            axes[vi.name] = named[0]
        elif len(unknown) == 1 and not dims[0].dim_param:  # [2, ?, 128]: a static dim 0, one size left open
            axes[vi.name] = unknown[0]
        else:
            axes[vi.name] = 0
    return axes


def _dims_text(dims):
    return ", ".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def check_and_upgrade(model, path=None, check=True, opset=None):
    """Checker (check=False: the model is onnx-lrp's own rewrite, checked already), opset conversion (to `opset`
    if given, else up to TARGET_OPSET when below MIN_OPSET), and shape inference, which runs on a copy without the
    weights (without_weights) and writes back only shapes."""
    fill_interface(model)
    if check:
        try:  # the checker serializes what it checks: the graph without its weights, which are sized below
            onnx.checker.check_model(without_weights(model), full_check=False)
        except Exception as exc:
            raise OnnxLrpError(f"is not a valid ONNX model: {str(exc).strip().splitlines()[0]}. "
                               "Run onnx.checker on it and fix the exporter's output.", path=path) from None
        _check_weight_sizes(model, path)
    current = default_opset(model)
    wanted = opset if opset is not None else (TARGET_OPSET if current < MIN_OPSET else current)
    if wanted != current:
        try:
            model = version_converter.convert_version(model, wanted)
        except Exception as exc:
            hint = (f"Export the model at opset {wanted}" if opset is not None else
                    f"Export the model at opset {TARGET_OPSET} or newer")
            raise OnnxLrpError(f"uses opset {current}, and converting it to opset {wanted} failed "
                               f"({str(exc).strip().splitlines()[0]}). {hint}.", path=path) from None
    try:
        inferred = shape_inference.infer_shapes(without_weights(model), check_type=True, data_prop=True)
    except Exception as exc:
        raise OnnxLrpError(f"is inconsistent: ONNX shape inference fails with {str(exc).strip().splitlines()[0]}. "
                           "Fix the exporter's output (onnx.shape_inference.infer_shapes shows the same).",
                           path=path) from None
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    outputs = {o.name: o for o in inferred.graph.output}
    for output in model.graph.output:
        output.type.CopyFrom(outputs[output.name].type)
    return model


_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


def _check_weight_sizes(model, path):
    """Each initializer with elements holds data (the checker's 'one and only one value field', asked without
    serializing the weights: protobuf would copy each of them to size it)."""
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL or not int(np.prod(init.dims)):
            continue
        if not (init.HasField("raw_data") or any(len(getattr(init, f)) for f in _DATA_FIELDS[1:])):
            raise OnnxLrpError(f"is not a valid ONNX model: initializer '{init.name}' (dims {list(init.dims)}) holds "
                               "no data. Export the model again with its weights.", path=path)


LIGHT_MAX_ELEMENTS = 64  # initializers up to this size keep their values in a light copy (reshape targets, axes)


def without_initializers(model):
    """A copy of the model's graph (nodes, inputs, outputs, value info) and opsets, with no initializer."""
    light = onnx.ModelProto()
    light.ir_version = max(model.ir_version, 4)
    light.opset_import.extend(model.opset_import)
    graph = light.graph
    graph.name = model.graph.name
    for field in ("node", "input", "output", "value_info"):
        getattr(graph, field).extend(getattr(model.graph, field))
    return light


def without_weights(model):
    """A copy of the model whose larger initializers are typed graph inputs instead: what shape inference, the
    checker and a test load need, without copying the weights (hundreds of MB for VGG-16)."""
    light = without_initializers(model)
    graph = light.graph
    inputs = {i.name for i in model.graph.input}
    for init in model.graph.initializer:
        if int(np.prod(init.dims)) <= LIGHT_MAX_ELEMENTS:
            graph.initializer.append(init)
        elif init.name not in inputs:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return light


@lru_cache(maxsize=1)
def max_runtime_opset():
    """The newest default-domain opset the installed onnxruntime loads (onnx may know newer ones)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    for version in range(onnx.defs.onnx_opset_version(), MIN_OPSET, -1):
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", version)])
        probe.ir_version = helper.find_min_ir_version_for(list(probe.opset_import))
        try:
            ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
            return version
        except Exception:  # noqa: BLE001 - "opset not supported" is an ordinary exception here
            continue
    return MIN_OPSET


def check_opset(opset, path=None):
    """--opset: an int from MIN_OPSET to the newest opset onnxruntime loads, or None (keep the model's)."""
    if opset is None:
        return None
    newest = max_runtime_opset()
    if not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise OnnxLrpError(f"opset {opset!r} is not supported: choose one from {MIN_OPSET} to {newest} (the newest "
                           "this onnxruntime loads)", path=path)
    return int(opset)


def default_opset(model):
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def tensor_shapes(graph):
    """name -> list of dims (int, or None where unknown), for every tensor shape inference could type."""
    shapes = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def tensor_types(graph):
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*graph.input, *graph.value_info, *graph.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    return types
