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
