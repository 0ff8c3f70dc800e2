"""Give every node a unique name: generated tensors are named `<node>/lrp/...` and the plan is keyed by node."""
from .base import Pass


class NameNodes(Pass):
    name = "name-nodes"

    def run(self, model, notes):
        seen = set()
        for i, node in enumerate(model.graph.node):
            name = node.name or f"{node.op_type}_{i}"
            while name in seen:
                name = f"{name}_{i}"
            node.name = name
            seen.add(name)
