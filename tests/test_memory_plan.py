"""Memory planning of a torch.cond (export/memory_plan.py): the branches' tensors get a region of the parent's arena
that lives from the cond to the last read of its result, instead of a reservation below the whole method.

Checked three ways: no two tensors that are alive together share bytes (the branches' tensors counted alive over
their region's lifetime); a program whose parent tensor lives across the cond computes what eager computes, in both
branches, through ExecuTorch's runtime; and the decoder's decode branch costs its arena nothing.
"""

from __future__ import annotations

import copy
import operator

import pytest
import torch
from torch.export import Dim

from megrez_mobile.export.memory_plan import ACTIVATION_MEM_ID

SEQ_MAX = 64


class TwoPaths(torch.nn.Module):
    """A tensor made before the cond and read after it, and branches with temporaries: a branch planned over the
    kept tensor's bytes would change the result. The kept tensor is the largest, so the planner puts it first, at
    offset 0, where a branch's own plan starts too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = (x * 3.0).repeat(1, 1, 4)
        y = torch.cond(x.shape[1] == 1, _one_path, _other_path, (x,))
        return kept * y.repeat(1, 1, 4) + kept


def _one_path(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1.0).exp() * 2.0).cos() - 7.0


def _other_path(x: torch.Tensor) -> torch.Tensor:
    return ((x * 5.0).sin() + 11.0).sqrt() * 13.0


def _to_executorch(module: torch.nn.Module, example: tuple, dynamic_shapes):
    from executorch.exir import EdgeCompileConfig, to_edge

    from megrez_mobile.export.lowering import to_executorch

    program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes, strict=False)
    edge = to_edge({"forward": program}, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    return to_executorch({"forward": edge.exported_program("forward")}, {})


def _allocations(graph_module: torch.fx.GraphModule) -> list[tuple[int, int, int, int, str]]:
    """(offset, end, first node, last node, name) of every planned activation that is written, a branch's over its
    cond's region lifetime (from the cond to the last read of its result)."""
    index = {node: i for i, node in enumerate(graph_module.graph.nodes)}
    # An out-variant op and its alloc node hold the same spec. A cond's result (and the getitem unpacking it) is
    # never written: the emitter's MoveCall replaces it by the branch's output, so it is planned on the branches'.
    seen = {id(spec) for node in graph_module.graph.nodes if node.target is torch.ops.higher_order.cond
            for spec in _specs(node)}
    rows = []
    for node in graph_module.graph.nodes:
        for spec in _specs(node):
            if node.op != "placeholder" and spec.mem_id == ACTIVATION_MEM_ID and id(spec) not in seen:
                seen.add(id(spec))
                rows.append((spec.mem_offset, spec.mem_offset + spec.allocated_memory, *spec.lifetime, node.name))
        if node.target is torch.ops.higher_order.cond:
            readers = [user for getter in node.users for user in
                       (getter.users if getter.target is operator.getitem else [getter])]
            last = max(index[r] for r in readers)
            for branch_node in node.args[1:3]:
                branch = getattr(graph_module, branch_node.target)
                for inner in branch.graph.nodes:
                    for spec in _specs(inner):
                        if inner.op != "placeholder" and spec.mem_id == ACTIVATION_MEM_ID and id(spec) not in seen:
                            seen.add(id(spec))
                            rows.append((spec.mem_offset, spec.mem_offset + spec.allocated_memory, index[node], last,
                                         f"{branch_node.target}.{inner.name}"))
    return rows


def _specs(node: torch.fx.Node) -> list:
    specs = node.meta.get("spec")
    return [s for s in (specs if isinstance(specs, (list, tuple)) else [specs]) if hasattr(s, "mem_id")]


def _overlaps(rows) -> list[tuple[str, str]]:
    """Pairs alive together on shared bytes. Two branch tensors may share bytes: each branch's own plan reuses its
    memory over its own nodes (ExecuTorch's), and the two branches never run together."""
    found = []
    for i, (start, end, first, last, name) in enumerate(rows):
        for start2, end2, first2, last2, name2 in rows[i + 1:]:
            if "." in name and "." in name2:
                continue
            if start < end2 and start2 < end and first <= last2 and first2 <= last:
                found.append((name, name2))
    return found


@pytest.fixture(scope="module")
def two_paths():
    return _to_executorch(TwoPaths(), (torch.randn(1, 8, 256),), ({1: Dim("seq", min=1, max=SEQ_MAX)},))


def test_no_two_live_tensors_share_bytes_and_the_branches_sit_inside_the_arena(two_paths):
    graph_module = two_paths.exported_program("forward").graph_module
    rows = _allocations(graph_module)
    branch_rows = [r for r in rows if "." in r[4]]
    assert branch_rows and len(rows) > len(branch_rows)
    assert _overlaps(rows) == []
    arena = two_paths.executorch_program.execution_plan[0].non_const_buffer_sizes[ACTIVATION_MEM_ID]
    assert max(end for _, end, *_ in rows) <= arena


@pytest.mark.parametrize("seq", [1, 5, SEQ_MAX])
def test_the_program_computes_what_eager_computes_in_both_branches(two_paths, seq):
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(two_paths.buffer).load_method("forward")
    x = torch.randn(1, seq, 256, generator=torch.Generator().manual_seed(seq))
    for _ in range(2):  # a second run reads the result the first run's move left in the cond's output
        (got,) = method.execute([x])
        torch.testing.assert_close(got, TwoPaths()(x), rtol=1e-5, atol=1e-5)


def test_the_decode_branch_costs_the_decoders_arena_nothing(tiny_model, monkeypatch):
    """ExecuTorch alone reserves the branches' plan (traced at the prefill bound) under the whole method: the
    full-size decoder's arena went 99 -> 120 MB with the branch. Scoped, the branch adds nothing.

    Checked with a delegate per linear, where the parent's many planned tensors leave the branch's region room to
    share. Grouped (the exporter's default now), the decoder's few boundaries do not: the branch adds 64 KiB to the
    tiny arena (360,512 against 294,976 B) and 10.5 MB at full size (BENCHMARKS.md), which this test does not
    cover."""
    from megrez_mobile.export import lowering
    from megrez_mobile.export.lowering import lower_method, to_executorch
    from megrez_mobile.export.programs import TextDecoder
    from megrez_mobile.export.recipe import Recipe

    monkeypatch.setattr(lowering, "SPLIT_DQ_LINEARS", {"text_decoder"})

    recipe = Recipe.load("xnnpack-fp32")
    llm = copy.deepcopy(tiny_model.llm)  # TextDecoder turns gradients off; the shared model stays as it is
    arenas, plans = {}, {}
    for branch in (True, False):
        decoder = TextDecoder(llm, 128, "fp32", decode_branch=branch).eval()
        with torch.no_grad():
            program = torch.export.export(decoder, (torch.zeros(1, 4, llm.config.hidden_size),
                                                    torch.zeros(1, dtype=torch.long)),
                                          dynamic_shapes=({1: Dim("seq", min=1, max=128)}, None), strict=False)
        lowered, _ = lower_method(recipe, "text_decoder", program)
        manager = to_executorch({"text_decoder": lowered}, {})
        arenas[branch] = manager.executorch_program.execution_plan[0].non_const_buffer_sizes[ACTIVATION_MEM_ID]
        plans[branch] = _allocations(manager.exported_program("text_decoder").graph_module)
    assert _overlaps(plans[True]) == []
    assert arenas[True] <= arenas[False], arenas
