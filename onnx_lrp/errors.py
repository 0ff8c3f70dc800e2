"""The one exception type every onnx-lrp failure is reported as."""


class OnnxLrpError(Exception):
    """A problem with the user's model or options, worded for the user (no traceback needed).

    The message names the file and, where it applies, the node and op, and says what to do.
    """

    def __init__(self, message, *, path=None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UnsupportedNodesError(OnnxLrpError):
    """The model has ops the compiler cannot propagate relevance through; lists all of them at once."""

    def __init__(self, nodes, *, path=None):
        self.nodes = list(nodes)
        lines = "\n".join(
            f"  - node '{n.name}' (op {n.domain or 'ai.onnx'}::{n.op_type}){': ' + why if why else ''}"
            for n, why in self.nodes)
        super().__init__(
            f"{len(self.nodes)} node(s) cannot be compiled:\n{lines}\n"
            "Remove or replace these ops before exporting, or open an issue with the model attached.",
            path=path)
