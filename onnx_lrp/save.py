"""Write a compiled model safely: temporary files in the target folder, renamed into place at the end, and the
weights in an external data file when the model would pass protobuf's 2 GB limit."""
import os
import shutil
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import OnnxLrpError

# protobuf cannot serialize a message of 2 GiB or more; keep a margin for the graph itself
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**27


def approximate_size(model):
    """The serialized size within a few bytes per tensor, without serializing: protobuf's ByteSize copies every
    weight to measure it. Weights count as their element bytes, everything else as measured."""
    total = 0
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        nbytes = _raw_size(init)
        total += init.ByteSize() if nbytes is None else nbytes + 64  # (strings and unusual types: measured)
    light = onnx.ModelProto()
    light.graph.node.extend(model.graph.node)
    return total + light.ByteSize()


def needs_external_data(model, threshold=None):
    return approximate_size(model) > (EXTERNAL_DATA_THRESHOLD if threshold is None else threshold)


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _repeated(field):
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 6; older ones only have `label`
    return is_repeated if is_repeated is not None else field.label == 3


def _field_part(message, field, value):
    """A message of the same type holding only this one field (a small copy: never called for the weights)."""
    part = type(message)()
    if _repeated(field):
        getattr(part, field.name).extend(value)
    elif field.type == field.TYPE_MESSAGE:
        getattr(part, field.name).CopyFrom(value)
    else:
        setattr(part, field.name, value)
    return part


def _tensor_size(tensor):
    """Serialized size of a TensorProto, its raw_data counted from its dims (protobuf would copy it to measure)."""
    if not tensor.HasField("raw_data"):
        return len(tensor.SerializeToString())
    meta = onnx.TensorProto()
    for field, value in tensor.ListFields():
        if field.name != "raw_data":
            meta.MergeFrom(_field_part(tensor, field, value))
    n = int(np.prod(tensor.dims)) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return len(meta.SerializeToString()) + 1 + len(_varint(n)) + n  # tag of field 9 (raw_data) is one byte


STREAMED = ("graph", "initializer")


def _size(message):
    total = 0
    for field, value in message.ListFields():
        if field.name not in STREAMED:
            total += len(_field_part(message, field, value).SerializeToString())
            continue
        for item in (value if _repeated(field) else [value]):
            n = _size(item) if field.name == "graph" else _tensor_size(item)
            total += len(_varint(field.number << 3 | 2)) + len(_varint(n)) + n
    return total


def _write_message(message, f):
    """The bytes of message.SerializeToString(), written field by field in field-number order, so that no copy of
    the whole model is ever held: the graph is written field by field and each weight tensor on its own."""
    for field, value in message.ListFields():
        if field.name not in STREAMED:
            f.write(_field_part(message, field, value).SerializeToString())
            continue
        tag = _varint(field.number << 3 | 2)  # wire type 2: length-delimited
        for item in (value if _repeated(field) else [value]):
            if field.name == "graph":
                n = _size(item)
                f.write(tag + _varint(n))
                start = f.tell()
                _write_message(item, f)
                if f.tell() - start != n:
                    raise OnnxLrpError(f"internal error: the graph took {f.tell() - start} bytes to write, not the "
                                       f"{n} measured. Please report this with the model.")
            else:
                data = item.SerializeToString()
                f.write(tag + _varint(len(data)) + data)


EXTERNAL_MIN_BYTES = 1024  # smaller tensors stay in the graph file


def write_with_external_data(model, path, data_name):
    """`path` holds the graph, `data_name` beside it every tensor of EXTERNAL_MIN_BYTES or more, written one at a
    time; the caller's model is left as it is (onnx.save_model moves the weights out of it, and reading them back
    held two copies of a model over 2 GB)."""
    light = onnx.ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            light.MergeFrom(_field_part(model, field, value))
    for field, value in model.graph.ListFields():
        if field.name != "initializer":
            light.graph.MergeFrom(_field_part(model.graph, field, value))
    with open(os.path.join(os.path.dirname(path), data_name), "wb") as data:
        for tensor in model.graph.initializer:
            nbytes = _raw_size(tensor)
            if tensor.data_location == onnx.TensorProto.EXTERNAL or nbytes is None or nbytes < EXTERNAL_MIN_BYTES:
                light.graph.initializer.append(tensor)
                continue
            meta = light.graph.initializer.add()
            for field, value in tensor.ListFields():
                if field.name not in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                                      "uint64_data"):
                    meta.MergeFrom(_field_part(tensor, field, value))
            raw = tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()
            offset = data.tell()
            data.write(raw)
            del raw
            meta.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(nbytes))):
                meta.external_data.add(key=key, value=value)
    with open(path, "wb") as f:
        f.write(light.SerializeToString())


def _raw_size(tensor):
    """The bytes of a numeric tensor's data, from its dims (None for strings and unusual types)."""
    try:
        return int(np.prod(tensor.dims)) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except Exception:  # noqa: BLE001
        return None


def write_serialized(model, f):
    """model.SerializeToString() into the open file `f`, holding at most one weight tensor's bytes at a time."""
    _write_message(model, f)


def check_output_folder(path):
    """Fail early, before a long compilation, when the folder to write into does not exist."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(folder):
        raise OnnxLrpError(f"the output folder {folder} does not exist. Create it or choose another -o.",
                           path=os.fspath(path))
    return folder


def write_model(model, path, *, external_data_threshold=None):
    """Write `model` to `path` atomically. Over the threshold, the weights go to `<name>.data` beside it.
    Returns the list of files written. Nothing is left behind on failure."""
    path = os.path.abspath(os.fspath(path))
    folder = check_output_folder(path)
    tmpdir = tempfile.mkdtemp(prefix=".onnx-lrp-", dir=folder)
    written = []
    try:
        staged = os.path.join(tmpdir, os.path.basename(path))
        if needs_external_data(model, external_data_threshold):
            data_name = os.path.basename(path) + ".data"
            write_with_external_data(model, staged, data_name)
            os.replace(os.path.join(tmpdir, data_name), os.path.join(folder, data_name))
            written.append(os.path.join(folder, data_name))
        else:
            with open(staged, "wb") as f:
                write_serialized(model, f)
        os.replace(staged, path)
        written.insert(0, path)
        return written
    except OSError as exc:
        for done in written:
            os.unlink(done)
        raise OnnxLrpError(f"cannot write the compiled model ({exc.strerror or exc}). Check the folder's "
                           "permissions and free space.", path=path) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
