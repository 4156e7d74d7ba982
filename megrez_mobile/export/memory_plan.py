"""Memory planning: where each method's activations, control-flow branches and KV cache live in planned memory.

ExecuTorch's planning (greedy, per method) with two changes, each measured on the full-size bundle:

- The KV cache (shared mutable buffers, mem_id 2) stays only in the plans of the methods that hold it.
- A torch.cond's branches get a region scoped to the cond, instead of one reserved below the whole method.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch

# Where share_mutable_buffers puts the KV cache (ExecuTorch's convention: activations 1, shared state 2).
KV_MEM_ID = 2
ACTIVATION_MEM_ID = 1


def memory_planning_pass():
    """Inputs come from the caller's buffers (from_blob), so they take no planned memory; mutable buffers (the KV
    cache) get their own memory id, kept only by the methods that hold them."""
    from executorch.exir.memory_planning import MemoryPlanningAlgorithmSuite
    from executorch.exir.passes import MemoryPlanningPass

    class StatefulMethodsOnly(MemoryPlanningPass):
        """ExecuTorch's planning with shared mutable buffers, except that only the methods holding state keep the
        shared arena (mem_id 2) in their plan.

        share_mutable_buffers appends mem_id 2 at the KV cache's full size to every method's plan, the encoders'
        too. A runtime that gives each method its own arenas (ExecuTorch's Module: the stock MultimodalRunner on
        Android and iOS) then allocates and zero-fills one KV-sized buffer per method: 4 × 640 MiB of resident
        memory for the full-size model. mem_id 2 is the plan's last entry, so dropping it changes nothing else.
        """

        def run_multimethod(self):
            super().run_multimethod()
            for graph_module in self.state.graph_modules:
                sizes = graph_module.meta["non_const_buffer_sizes"]
                if len(sizes) == KV_MEM_ID + 1 and not _uses_memory_id(graph_module, KV_MEM_ID):
                    del sizes[KV_MEM_ID:]  # in place: to_executorch already copied this meta list to the program

    return StatefulMethodsOnly(memory_planning_algo=ScopedControlFlow(MemoryPlanningAlgorithmSuite()),
                               alloc_graph_input=False, share_mutable_buffers=True)


@dataclass
class _BranchRegion:
    """The planned memory a cond's branches use, as one allocation of the parent graph."""
    spec: object  # executorch.exir.tensor.TensorSpec, planned by the parent's algorithm
    branches: list[torch.fx.GraphModule] = field(default_factory=list)
    results: list = field(default_factory=list)  # the TensorSpecs of the conds' results


class ScopedControlFlow:
    """A memory planning algorithm that plans each torch.cond's branches inside the parent's arena, live only from
    the cond to the last use of its results.

    ExecuTorch plans a method's cond branches from offset 0 and then starts the whole method's arena above the
    largest branch, so the branches' memory is reserved for the method's whole run. The decoder's decode branch
    (programs.one_position_attention) is traced at the prefill bound, so that reservation was 20 MiB of the
    full-size decoder's arena (99 -> 120 MB). Here each cond's branches become one allocation of the parent graph,
    planned by the same algorithm as every other tensor, and the branches' tensors are moved by its offset.

    The region lives until the cond's results are last read: the emitter moves (MoveCall) each branch's output
    EValue into the cond's result, so the parent reads the result from the branch's memory.
    """

    def __init__(self, algorithm):
        self.algorithm = algorithm
        self.__name__ = "scoped_control_flow"  # ExecuTorch logs the algorithm's name

    def __call__(self, alignment, specs, graph_module, graph_signature, extra_padding):
        regions = _branch_regions(graph_module)
        if not regions:
            return self.algorithm(alignment, specs, graph_module, graph_signature, extra_padding)
        # apply_algo has put the largest branch plan here as a base offset for the whole method; the regions replace it.
        graph_module.input_mem_buffer_sizes = []
        # A cond's own results are never written: the branch's output EValue replaces them (MoveCall). They are
        # placed on their region rather than given bytes of their own.
        results = {id(spec): region for region in regions for spec in region.results}
        planned = [spec for spec in specs if id(spec) not in results]
        sizes = self.algorithm(alignment, [*planned, *(region.spec for region in regions)], graph_module,
                               graph_signature, extra_padding)
        for region in regions:
            if region.spec.mem_id != ACTIVATION_MEM_ID:
                raise AssertionError(f"a cond's branch region was planned in memory id {region.spec.mem_id}")
            for spec in _planned_branch_specs(region.branches):
                spec.mem_offset += region.spec.mem_offset
        for spec in specs:
            if id(spec) in results:
                region = results[id(spec)].spec
                spec.mem_id, spec.mem_offset, spec.mem_obj_id = region.mem_id, region.mem_offset, region.mem_obj_id
        return sizes


def _branch_regions(graph_module: torch.fx.GraphModule) -> list[_BranchRegion]:
    """One region per set of branches, sized by their plans (already made: apply_algo plans branches first)."""
    from executorch.exir.memory_planning import get_cond_nodes
    from executorch.exir.tensor import TensorSpec

    node_index = {node: i for i, node in enumerate(graph_module.graph.nodes)}
    by_branch: dict[int, _BranchRegion] = {}
    regions: list[_BranchRegion] = []
    for cond in get_cond_nodes(graph_module):
        branches = [getattr(graph_module, arg.target) for arg in cond.args[1:3]]
        size = 0
        for branch in branches:
            branch_sizes = branch.meta["non_const_buffer_sizes"]
            if any(branch_sizes[ACTIVATION_MEM_ID + 1:]):
                raise AssertionError("a cond branch plans memory outside the activation arena")
            size = max(size, branch_sizes[ACTIVATION_MEM_ID])
        start, end = node_index[cond], _last_use(cond, node_index)
        region = next((by_branch[id(b)] for b in branches if id(b) in by_branch), None)
        if region is None:
            region = _BranchRegion(TensorSpec(torch.uint8, torch.Size([size])))
            region.spec.lifetime = [start, end]
            regions.append(region)
        else:  # branches shared between conds: one region over all of them
            region.spec.shape = [max(region.spec.shape[0], size)]
            region.spec.lifetime = [min(region.spec.lifetime[0], start), max(region.spec.lifetime[1], end)]
        region.results.extend(spec for spec in _result_specs(cond) if spec.allocated_memory <= region.spec.allocated_memory)
        for branch in branches:
            if id(branch) not in by_branch:
                by_branch[id(branch)] = region
                region.branches.append(branch)
    return regions


def _result_specs(cond: torch.fx.Node) -> list:
    specs = cond.meta.get("spec")
    return [spec for spec in (specs if isinstance(specs, (list, tuple)) else [specs]) if hasattr(spec, "mem_id")]


def _last_use(cond: torch.fx.Node, node_index: dict) -> int:
    """The index of the last node that reads the cond's results (through the getitems that unpack them)."""
    last = node_index[cond]
    pending = list(cond.users)
    while pending:
        user = pending.pop()
        last = max(last, node_index[user])
        if user.target is operator.getitem:
            pending.extend(user.users)
    return last


def _planned_branch_specs(branches: list[torch.fx.GraphModule]) -> list:
    """The tensor specs the branches' own plans placed: not their inputs, which are the parent's tensors."""
    seen: dict[int, object] = {}
    for branch in branches:
        for module in branch.modules():
            if not isinstance(module, torch.fx.GraphModule):
                continue
            for node in module.graph.nodes:
                if node.op == "placeholder":
                    continue
                specs = node.meta.get("spec")
                for spec in specs if isinstance(specs, (list, tuple)) else [specs]:
                    if getattr(spec, "mem_id", None) == ACTIVATION_MEM_ID and spec.mem_offset is not None:
                        seen.setdefault(id(spec), spec)
    return list(seen.values())


def _uses_memory_id(graph_module: torch.fx.GraphModule, mem_id: int) -> bool:
    for node in graph_module.graph.nodes:
        specs = node.meta.get("spec")
        for spec in specs if isinstance(specs, (list, tuple)) else [specs]:
            if getattr(spec, "mem_id", None) == mem_id:
                return True
    return False
