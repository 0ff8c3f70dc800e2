"""Structural clean-up on onnx-ir, the ONNX project's IR (use-def chains, common passes), instead of hand-written
protobuf edits: unique node names, initializers out of the graph inputs, Constant nodes lifted to initializers,
inference-time Dropout and Identity removed from the main graph, dead nodes and unused initializers dropped.

The IR works on a skeleton of the model whose initializers carry no data; the result is written back into the
model's own protobuf, whose weight tensors are never copied (VGG-16's 528 MB stay where they are)."""
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import (LiftConstantsToInitializersPass, NameFixPass, RemoveInitializersFromInputsPass,
                                   RemoveUnusedNodesPass)
from onnx_ir.passes.common.naming import SimpleNameGenerator

from ..load import without_initializers
from .base import Pass


class _OpTypeNames(SimpleNameGenerator):
    """An unnamed node is called after its op (`Conv`, then `Conv_1`, ...): generated tensors are named
    `<node>/lrp/...`, so the name should say what the node is."""

    def generate_node_name(self, node):
        return node.name or node.op_type


class RemoveIdentities(ir.passes.InPlacePass):
    """Identity, and Dropout whose mask nobody reads (an identity at inference), leave the main graph: each would be
    one more step of the relevance pass. Subgraphs are left alone (the relevance pass refuses control flow), and so
    is an Identity that writes a graph output (the interface keeps its names). onnx-ir 1.1's
    IdentityEliminationPass fails on a branch whose output is an Identity of an outer value."""

    def call(self, model):
        modified = False
        for node in list(model.graph):
            if node.op_type not in ("Identity", "Dropout") or node.domain not in ("", "ai.onnx"):
                continue
            if node.outputs[0].is_graph_output() or any(o.uses() or o.is_graph_output() for o in node.outputs[1:]):
                continue
            ir.convenience.replace_all_uses_with(node.outputs[0], node.inputs[0])
            model.graph.remove(node, safe=True)
            modified = True
        return ir.passes.PassResult(model, modified=modified)


CLEAN_UP = (NameFixPass(_OpTypeNames()), RemoveInitializersFromInputsPass(),
            LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0), RemoveIdentities(),
            RemoveUnusedNodesPass())


class CleanStructure(Pass):
    """The IR clean-up before shape folding and planning."""
    name = "clean-structure"
    passes = CLEAN_UP

    def run(self, model, notes):
        run_on_skeleton(model, self.passes)


class PruneUnused(CleanStructure):
    """Dead nodes and unused initializers after the relevance pass is written (e.g. a folded BatchNorm's)."""
    name = "prune-unused"
    passes = (RemoveUnusedNodesPass(),)


def run_on_skeleton(model, passes):
    """Run onnx-ir passes on `model` (a ModelProto, edited in place) without handing them its weights."""
    had_inputs = {i.name for i in model.graph.input}
    light, untyped = _skeleton(model)
    skeleton = ir.serde.deserialize_model(light)
    ir.passes.PassManager(list(passes))(skeleton)
    result = ir.serde.serialize_model(skeleton)
    graph, new = model.graph, result.graph
    kept = {i.name for i in new.initializer}
    for i in reversed(range(len(graph.initializer))):  # in place: rebuilding the list would copy every weight
        if graph.initializer[i].name not in kept:
            del graph.initializer[i]
    held = {i.name for i in graph.initializer}
    graph.initializer.extend(i for i in new.initializer if i.name not in held)  # lifted Constants (small)
    for field in ("node", "input", "output", "value_info"):
        graph.ClearField(field)
        getattr(graph, field).extend(untyped.get(v.name, v) for v in getattr(new, field))
    if had_inputs & held:
        model.ir_version = max(model.ir_version, 4)  # IR 4 is where initializers stopped being graph inputs


def _skeleton(model):
    """(the model with data-less stand-ins for its initializers (name, type and dims kept), {name: value info} of
    the values typed with maps, which onnx-ir 1.1 cannot represent (scikit-learn's ZipMap outputs): the skeleton
    names them without a type, and they get their own info back)."""
    untyped = {v.name: v for field in ("input", "output", "value_info") for v in getattr(model.graph, field)
               if _has_map(v.type)}
    light = without_initializers(model)
    light.functions.extend(model.functions)
    for field in ("input", "output", "value_info"):
        for v in getattr(light.graph, field):
            if v.name in untyped:
                v.ClearField("type")
    light.graph.initializer.extend(onnx.TensorProto(name=i.name, data_type=i.data_type, dims=i.dims)
                                   for i in model.graph.initializer)
    return light, untyped


def _has_map(type_proto):
    kind = type_proto.WhichOneof("value")
    if kind == "map_type":
        return True
    if kind in ("sequence_type", "optional_type"):
        return _has_map(getattr(type_proto, kind).elem_type)
    return False
