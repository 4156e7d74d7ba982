"""Read a .pte's execution plans: which operators each method runs outside its delegates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def _program(pte: Path):
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(pte).read_bytes())
    return getattr(program, "program", program)  # newer versions wrap it with the named data


def method_operators(pte: Path) -> dict[str, set[str]]:
    program = _program(pte)
    return {plan.name: {op.name for op in plan.operators} for plan in program.execution_plan}


def operator_calls(pte: Path, method: str) -> Counter:
    """How many times `method` calls each operator outside its delegates (kernel calls in its instructions)."""
    program = _program(pte)
    plan = next(p for p in program.execution_plan if p.name == method)
    calls = Counter()
    for chain in plan.chains:
        for instruction in chain.instructions:
            op_index = getattr(instruction.instr_args, "op_index", None)
            if op_index is not None:
                calls[plan.operators[op_index].name] += 1
    return calls


def jump_instructions(pte: Path, method: str) -> list:
    """`method`'s JumpFalseCall instructions in program order (how the emitter writes a torch.cond)."""
    program = _program(pte)
    plan = next(p for p in program.execution_plan if p.name == method)
    return [i.instr_args for chain in plan.chains for i in chain.instructions
            if type(i.instr_args).__name__ == "JumpFalseCall"]


# The .pte's ScalarType codes (executorch/exir/scalar_type.py) of the dtypes a KV cache uses, with their sizes.
_DTYPES = {1: ("int8", 1), 6: ("float32", 4), 7: ("float64", 8), 4: ("int64", 8), 0: ("uint8", 1)}


def mutable_buffers(pte: Path, method: str) -> dict[str, dict]:
    """The named mutable buffers of `method` (their names are emitted with emit_mutable_buffer_names): dtype, sizes,
    the memory id they are planned in, and their bytes."""
    program = _program(pte)
    plan = next(p for p in program.execution_plan if p.name == method)
    found = {}
    for value in plan.values:
        tensor = value.val
        info = getattr(tensor, "extra_tensor_info", None)
        if info is None or not getattr(info, "fully_qualified_name", None):
            continue
        dtype, size = _DTYPES[int(tensor.scalar_type)]
        numel = 1
        for d in tensor.sizes:
            numel *= d
        found[info.fully_qualified_name] = {"dtype": dtype, "sizes": list(tensor.sizes), "bytes": numel * size,
                                            "mem_id": tensor.allocation_info.memory_id}
    return found


def planned_activation_shapes(pte: Path, method: str) -> list[tuple[int, ...]]:
    """The upper-bound sizes of every tensor `method` plans in its activation arena (memory id 1): what ExecuTorch
    holds between ops and delegates, not what a delegate keeps inside."""
    from megrez_mobile.export.memory_plan import ACTIVATION_MEM_ID

    program = _program(pte)
    plan = next(p for p in program.execution_plan if p.name == method)
    return [tuple(value.val.sizes) for value in plan.values
            if getattr(getattr(value.val, "allocation_info", None), "memory_id", None) == ACTIVATION_MEM_ID]
