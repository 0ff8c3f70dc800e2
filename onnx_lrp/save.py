"""Write a compiled model safely: temporary files in the target folder, renamed into place at the end, and the
weights in an external data file when the model would pass protobuf's 2 GB limit."""
import os
import shutil
import tempfile

import onnx
from onnx.external_data_helper import load_external_data_for_model

from .errors import OnnxLrpError

# protobuf cannot serialize a message of 2 GiB or more; keep a margin for the graph itself
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**27


def needs_external_data(model, threshold=None):
    try:
        return model.ByteSize() > (EXTERNAL_DATA_THRESHOLD if threshold is None else threshold)
    except Exception:  # protobuf refuses even to size a message over 2 GB (EncodeError)
        return True


def _restore_inline_data(model, folder):
    """onnx.save_model moved the weights out of the caller's model: read them back, leaving it as it was."""
    load_external_data_for_model(model, folder)
    for tensor in model.graph.initializer:
        if tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.DEFAULT:
            tensor.ClearField("data_location")


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
            onnx.save_model(model, staged, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            _restore_inline_data(model, tmpdir)
            os.replace(os.path.join(tmpdir, data_name), os.path.join(folder, data_name))
            written.append(os.path.join(folder, data_name))
        else:
            with open(staged, "wb") as f:
                f.write(model.SerializeToString())
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
