"""Read a .pte's execution plans: which operators each method runs outside its delegates."""

from __future__ import annotations

from pathlib import Path


def method_operators(pte: Path) -> dict[str, set[str]]:
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(pte).read_bytes())
    program = getattr(program, "program", program)  # newer versions wrap it with the named data
    return {plan.name: {op.name for op in plan.operators} for plan in program.execution_plan}
