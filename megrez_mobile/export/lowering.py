"""Backend packing: partitioners per method and backend, edge lowering, and delegation coverage.

Quantization already happened (quantize.py); this stage only decides which delegate runs which op.
`token_embedding` is never delegated: its (quantized) table lookup runs as `quantized_decomposed::embedding_*`
on ExecuTorch's portable/quantized kernels, as in ExecuTorch's own LLM exports.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.export import ExportedProgram

from ..bundle import coverage_percent
from ..errors import ExportError
from .memory_plan import memory_planning_pass
from .recipe import Recipe

# Graph nodes that move no data worth counting when measuring how much of a method a delegate runs.
_BOOKKEEPING = {"getitem", "_assert_scalar", "sym_size", "sym_constrain_range_for_size", "_local_scalar_dense",
                "alloc", "sym_storage_offset", "_assert_async"}


@dataclass(frozen=True)
class Coverage:
    delegated_ops: int
    total_ops: int
    delegates: int

    @property
    def percent(self) -> float:
        return coverage_percent(self.delegated_ops, self.total_ops)


# Methods whose dynamically quantized linears each get their own XNNPACK delegate (ExecuTorch's LLM idiom). None:
# each such linear's output is a delegate boundary, which ExecuTorch plans in the method's own arena, and the stock
# runner gives every method its own arena. Grouped, a layer's insides live in XNNPACK's workspace, which all
# delegates of all methods share. At full size the decoder's FFN held 3 × 29 MB of its 99 MB arena at the 1,024-token
# bound; grouped, the arena is 53 MB, the logits are the same bit for bit, decode is 10 % faster and the decoder
# lowers in 521 s instead of 1,163 (BENCHMARKS.md). The encoders were grouped first: split, the vision tower's 27
# layers became 282 delegates (698 MiB arena; grouped 181 MiB, 6 % faster), the speech encoder's 360 (73 MiB;
# grouped 59 MiB, 4.5 % faster). benchmarks/encoder.py still A/Bs the split form.
SPLIT_DQ_LINEARS: set[str] = set()


def partitioners(recipe: Recipe, method: str) -> list:
    backend = recipe.method_backend(method)
    if backend == "portable":
        return []
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        if method not in SPLIT_DQ_LINEARS:
            return [XnnpackPartitioner()]
        # One delegate per dynamically quantized linear, then the rest greedily.
        return [XnnpackPartitioner(config_precisions=ConfigPrecisionType.DYNAMIC_QUANT, per_op_mode=True),
                XnnpackPartitioner()]
    if backend == "vulkan":
        from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner

        return [VulkanPartitioner({"require_dynamic_shapes": True,
                                   "force_fp16": recipe.options.compute_precision == "fp16"})]
    if backend == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        precision = ct.precision.FLOAT16 if recipe.options.compute_precision == "fp16" else ct.precision.FLOAT32
        target = getattr(ct.target, recipe.options.minimum_deployment_target)
        specs = CoreMLBackend.generate_compile_specs(minimum_deployment_target=target, compute_precision=precision,
                                                     compute_unit=ct.ComputeUnit.ALL)
        if method == "vision_encoder":
            # One Core ML model for the whole method: its position ids and 2D table derive from the slice's shape,
            # and Core ML takes no SymInt (nor a dim like 14·rows) across a partition boundary.
            return [CoreMLPartitioner(compile_specs=specs, lower_full_graph=True, take_over_mutable_buffer=True)]
        # The KV cache stays with ExecuTorch's update_cache op (CPU): Core ML takes no mutable buffers here.
        return [CoreMLPartitioner(compile_specs=specs, take_over_mutable_buffer=False)]
    raise ExportError(f"no partitioner for backend {backend!r}")


def infer_symbolic_view_dims(graph_module: torch.fx.GraphModule):
    """Rewrite `view_copy(x, [s0*s1, 64])` as `view_copy(x, [-1, 64])` where exactly one dim is symbolic.

    torch.export records reshapes with symbolic sizes, which XNNPACK refuses to delegate ("Symbolic reshape is not
    supported"); with the one dynamic dim inferred the reshape means the same and stays inside the delegate.
    """
    from executorch.exir.dialects._ops import ops as exir_ops
    from torch.fx.passes.infra.pass_base import PassResult

    changed = False
    for node in graph_module.graph.nodes:
        if node.op == "call_function" and node.target == exir_ops.edge.aten.view_copy.default:
            shape = list(node.args[1])
            symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
            if len(symbolic) == 1 and -1 not in shape:
                shape[symbolic[0]] = -1
                node.args = (node.args[0], shape)
                changed = True
    if changed:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return PassResult(graph_module, changed)


def drop_scalar_asserts(graph_module: torch.fx.GraphModule):
    """Remove the export-time bound checks (`_assert_scalar` on the start position) and their dead SymInt math.

    Core ML's partitioner pulls them into its partition and then refuses the SymInt placeholder they read. The
    bounds still hold at run time: `llama::update_cache` checks start + T against the cache itself.
    """
    from torch.fx.passes.infra.pass_base import PassResult

    asserts = [n for n in graph_module.graph.nodes
               if n.op == "call_function" and n.target == torch.ops.aten._assert_scalar.default]
    for node in asserts:
        graph_module.graph.erase_node(node)
    if asserts:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return PassResult(graph_module, bool(asserts))


@contextlib.contextmanager
def nonempty_unbacked_sizes_delegated():
    """Let XNNPACK's partitioner take tensors whose unbacked sizes cannot be 0.

    It refuses any tensor with an unbacked (data-dependent) size, because such a size could be 0 and XNNPACK has no
    empty tensors. The vision encoder's patch count is unbacked on purpose and asserted >= 2
    (`model.vision.bounded_patch_count`); refused, its whole graph ran outside XNNPACK. A size whose range
    includes 0 is still refused.
    """
    from executorch.backends.xnnpack.partition.config import xnnpack_config
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    def may_be_empty(value: torch.Tensor) -> bool:
        envs = [d.node.shape_env for d in value.shape if isinstance(d, torch.SymInt)]
        return any(not envs or envs[0].var_to_range[s].lower < 1 for s in free_unbacked_symbols(value))

    original = xnnpack_config.has_free_unbacked_symbols
    xnnpack_config.has_free_unbacked_symbols = may_be_empty
    try:
        yield
    finally:
        xnnpack_config.has_free_unbacked_symbols = original


@contextlib.contextmanager
def xnnpack_preprocess_shares_weights():
    """Let XNNPACK's preprocessing read each partition's weights in place instead of from a deep copy.

    ExecuTorch deep-copies every partition's program (weights included) before any of them is preprocessed, and
    holds all the copies until the last one is: for the full-size decoder a second copy of its 2.7 GB of quantized
    weights beside the serialized ones, the export's peak (BENCHMARKS.md). XNNPACK's passes build new tensors
    rather than change the weights, so the copy keeps its own graph and state dict and shares the tensors, as
    ExecuTorch's CUDA backend does in its low-memory mode. Bundles are byte-identical either way.
    """
    import copy

    from executorch.backends.xnnpack.xnnpack_preprocess import XnnpackBackend

    def copy_sharing_tensors(cls, edge_program: ExportedProgram, compile_specs) -> ExportedProgram:
        shared = {id(t): t for table in (edge_program.state_dict, edge_program.constants)
                  for t in table.values() if isinstance(t, torch.Tensor)}
        return copy.deepcopy(edge_program, shared)

    original = XnnpackBackend.__dict__.get("copy_exported_program_for_preprocess")
    XnnpackBackend.copy_exported_program_for_preprocess = classmethod(copy_sharing_tensors)
    try:
        yield
    finally:
        if original is None:
            del XnnpackBackend.copy_exported_program_for_preprocess
        else:
            XnnpackBackend.copy_exported_program_for_preprocess = original


def lower_method(recipe: Recipe, method: str, program: ExportedProgram) -> tuple[ExportedProgram, Coverage]:
    """Lower one exported method to the edge dialect with its delegates; returns the edge program."""
    edge = _lower(recipe, method, program, name=method)
    edge_program = edge.exported_program(method)
    return edge_program, delegation_coverage(edge_program)


def lower_for_debugging(recipe: Recipe, method: str, program: ExportedProgram):
    """The method lowered exactly as in a bundle, alone, as a program with an ETRecord for the Inspector.

    Its graph and debug handles are those of the bundle's method, so the Inspector can line up the bundle's
    ETDump with this ETRecord. The method is named `forward`: the Inspector reads only that name.
    """
    edge = _lower(recipe, method, program, name="forward", generate_etrecord=True)
    return edge.to_executorch(_backend_config())


def _lower(recipe: Recipe, method: str, program: ExportedProgram, name: str, generate_etrecord: bool = False):
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    ranges = _symbol_ranges(program)
    try:
        with nonempty_unbacked_sizes_delegated(), xnnpack_preprocess_shares_weights():
            edge = to_edge_transform_and_lower(
                {name: program}, transform_passes=[infer_symbolic_view_dims] + (
                    [drop_scalar_asserts] if recipe.method_backend(method) == "coreml" else []),
                partitioner={name: partitioners(recipe, method)},
                compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True),
                generate_etrecord=generate_etrecord)
    except Exception as e:  # noqa: BLE001 - re-raised with the method and backend named
        raise ExportError(f"lowering {method} for {recipe.method_backend(method)} failed: "
                          f"{type(e).__name__}: {e}") from e
    _restore_symbol_ranges(edge.exported_program(name), ranges)
    return edge


def _symbol_ranges(program: ExportedProgram) -> dict:
    """The shape environment's value ranges of the program's dynamic dims (shared by its fake tensors)."""
    for node in program.graph.nodes:
        for dim in getattr(node.meta.get("val"), "shape", ()):
            if isinstance(dim, torch.SymInt):
                return dict(dim.node.shape_env.var_to_range)
    return {}


def _restore_symbol_ranges(program: ExportedProgram, ranges: dict) -> None:
    """Put back the ranges the export declared. XNNPACK's lowering narrows them in the shared shape environment
    (seen: audio_encoder's mel pairs [4, 1500] became [81, 160]), and memory planning then sizes the input for
    320 mel frames instead of 3000: any clip over 3.2 s failed with "set_inputs ... error 0x10"."""
    for node in program.graph.nodes:
        for dim in getattr(node.meta.get("val"), "shape", ()):
            if isinstance(dim, torch.SymInt):
                dim.node.shape_env.var_to_range.update(ranges)
                return


def delegation_coverage(edge_program: ExportedProgram) -> Coverage:
    """Ops run inside delegates vs all compute ops of a lowered method."""
    delegated = total = delegates = 0
    graph_module = edge_program.graph_module
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = _op_name(node.target)
        if name == "executorch_call_delegate":
            delegates += 1
            lowered = getattr(graph_module, node.args[0].target)
            inner = _count_ops(lowered.original_module.graph_module)
            delegated += inner
            total += inner
        elif name not in _BOOKKEEPING:
            total += 1
    return Coverage(delegated, total, delegates)


def _count_ops(graph_module: torch.fx.GraphModule) -> int:
    return sum(1 for n in graph_module.graph.nodes
               if n.op == "call_function" and _op_name(n.target) not in _BOOKKEEPING)


def _op_name(target) -> str:
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


def to_executorch(edge_programs: dict[str, ExportedProgram], constant_methods: dict):
    """Join the lowered methods into one program and run ExecuTorch's memory planning."""
    from executorch.exir import EdgeCompileConfig
    from executorch.exir.program import EdgeProgramManager

    manager = EdgeProgramManager(edge_programs, constant_methods=constant_methods,
                                 compile_config=EdgeCompileConfig(_check_ir_validity=False, _skip_dim_order=True))
    return manager.to_executorch(_backend_config())


def _backend_config():
    from executorch.exir import ExecutorchBackendConfig
    return ExecutorchBackendConfig(
        extract_delegate_segments=True,
        # Fuses torchao's dequantize + embedding into quantized_decomposed::embedding_{byte,4bit}.
        do_quant_fusion_and_const_prop=True,
        # Inputs come from the caller's buffers (from_blob), so they take no planned memory. The KV cache gets its
        # own memory id: left in the activation arena, running vision_encoder or audio_preprocessor between
        # decoder calls overwrote it (seen in both executorch.runtime and the stock MultimodalRunner). Every
        # mutable buffer goes there, so an int8 cache's scales and zero points do too (tests/test_kv_cache.py).
        memory_planning_pass=memory_planning_pass(),
        emit_mutable_buffer_names=True)

