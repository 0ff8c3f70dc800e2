"""Remove Identity and Dropout (inference-time identities); they would only add steps to the relevance pass."""
from .base import Pass, consumers, graph_output_names, remove_nodes, rename_input


class RemoveIdentities(Pass):
    name = "remove-identities"

    def run(self, model, notes):
        graph = model.graph
        outputs = graph_output_names(graph)
        doomed = []
        for node in graph.node:
            if node.op_type not in ("Identity", "Dropout") or node.domain not in ("", "ai.onnx"):
                continue
            if node.output[0] in outputs or any(o for o in node.output[1:] if consumers(graph).get(o)):
                continue  # the output is part of the model's interface, or the dropout mask is used
            rename_input(graph, node.output[0], node.input[0])
            doomed.append(node)
        remove_nodes(graph, doomed)


class InitializersOutOfInputs(Pass):
    """IR < 4 files list every initializer among the graph inputs too. The compiled file is IR >= 8, where those
    entries would only make onnxruntime treat the weights as overridable inputs (and warn on every load)."""
    name = "initializers-out-of-inputs"

    def run(self, model, notes):
        initializers = {i.name for i in model.graph.initializer}
        keep = [i for i in model.graph.input if i.name not in initializers]
        if len(keep) < len(model.graph.input):
            del model.graph.input[:]
            model.graph.input.extend(keep)
            model.ir_version = max(model.ir_version, 4)  # IR 4 is where initializers stopped being inputs
