"""onnx-lrp: compile an ONNX classifier into a graph that also computes its LRP relevance."""
__version__ = "0.1.0"

from .compiler import compile  # noqa: E402
from .composites import COMPOSITES, DEFAULT_COMPOSITE, TRANSFORMER_COMPOSITES, ZENNIT_COMPOSITES  # noqa: E402
from .errors import OnnxLrpError, UnsupportedNodesError  # noqa: E402
from .explain import Explainer, Explanation, session_options  # noqa: E402
from .inspection import inspect  # noqa: E402
from .rules import RULES  # noqa: E402
from .save import write_model  # noqa: E402

__all__ = ["compile", "write_model", "Explainer", "Explanation", "session_options", "inspect", "OnnxLrpError", "UnsupportedNodesError", "COMPOSITES", "DEFAULT_COMPOSITE",
           "ZENNIT_COMPOSITES", "TRANSFORMER_COMPOSITES", "RULES", "__version__"]
