"""Export recipes: data (export/*.yaml) read into typed objects, checked before any work starts.

A recipe is an ordered list of rules "module-name pattern -> quantization scheme" (for linears, or for embeddings
with `kind: embedding`; the first matching rule wins),
a backend, and export options. Patterns are shell-style globs over the checkpoint's module names
(`llm.model.layers.*.mlp.*`, `llm.lm_head`, `vision.*`, `audio.*`), so they read like the official weights.
What a backend cannot run correctly is refused here, with the reason, before a weight is read.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..untrusted import bounded, checked_value, read_yaml, typed_fields

# The shipped recipes live in the repository's export/ folder (the package is installed editable, as the README says).
RECIPES_DIR = Path(__file__).resolve().parents[2] / "export"

BACKENDS = ("xnnpack", "vulkan", "coreml", "portable")
# Methods a backend cannot lower run on XNNPACK (CPU) instead: Vulkan fails on the vision tower's dynamic-shape
# graph ("graph_output_allocated not set" in memory planning); Core ML on the log-mel's padding (coremltools:
# concat of int and float).
XNNPACK_FALLBACKS = {("vulkan", "vision_encoder"), ("coreml", "audio_preprocessor")}
# Which method a checkpoint module belongs to, by its top-level name.
METHOD_OF_PREFIX = {"llm": "text_decoder", "vision": "vision_encoder", "audio": "audio_encoder"}
# scheme -> (weight bits, dynamic int8 activations?). "none" keeps the float weights.
SCHEMES = {"none": (None, False), "8da4w": (4, True), "8da8w": (8, True), "4w": (4, False), "8w": (8, False)}
METHODS = ("token_embedding", "text_decoder", "vision_encoder", "audio_encoder", "audio_preprocessor")
# What the decoder's KV cache holds: float32 rows, or int8 rows with a float32 scale and an int8 zero point each
# (ExecuTorch's per-token quantized cache and `llama::custom_quantized_sdpa`; about 0.27x the bytes at head_dim 64).
KV_CACHE_DTYPES = ("fp32", "int8")
# Decoder backends an int8 KV cache is exported for: there every KV op (per-token quantize, update_cache, quantized
# SDPA) runs on ExecuTorch's CPU kernels (the tests run it next to XNNPACK). The others fail to lower it (seen here):
KV_CACHE_BACKENDS = ("xnnpack", "portable")
# Decoder backends that leave attention to ExecuTorch's CPU kernels, where a decode step takes its own attention
# branch (programs.TextDecoder). Core ML's partitioner pulls that torch.cond into its partition and fails.
DECODE_BRANCH_BACKENDS = ("xnnpack", "portable")
KV_CACHE_REFUSALS = {
    "vulkan": "Vulkan's lowering fails on the per-token quantize ops feeding custom_quantized_sdpa (\"Tried to erase "
              "Node ... but it still had 1 users\")",
    "coreml": "Core ML's partitioner takes the per-token quantize op and coremltools refuses it (\"Dynamic "
              "activation quantization is not supported in Core ML\")",
}


@dataclass(frozen=True)
class QuantScheme:
    """One quantization: `scheme` from SCHEMES, `group_size` 0 = per output channel."""

    scheme: str = "none"
    group_size: int = bounded(0, 1 << 16, default=0)
    # HQQ scale-only search for the weight scales (ExecuTorch's and optimum's default for 4-bit).
    hqq: bool = True

    @property
    def weight_bits(self) -> int | None:
        return SCHEMES[self.scheme][0]

    @property
    def dynamic_activations(self) -> bool:
        return SCHEMES[self.scheme][1]

    @property
    def weight_only(self) -> bool:
        return self.weight_bits is not None and not self.dynamic_activations

    def describe(self) -> str:
        if self.scheme == "none":
            return "float"
        return f"{self.scheme} " + (f"g{self.group_size}" if self.group_size else "per-channel")


KINDS = ("linear", "embedding")


@dataclass(frozen=True)
class QuantRule:
    pattern: str
    quant: QuantScheme
    # Which modules the rule is about: nn.Linear ("linear", the default) or nn.Embedding ("embedding").
    kind: str = "linear"

    def matches(self, module_name: str, kind: str) -> bool:
        return kind == self.kind and fnmatch.fnmatchcase(module_name, self.pattern)


@dataclass(frozen=True)
class ExportOptions:
    """Shape bounds and numerics shared by every method of the program."""

    # KV-cache length = `get_max_context_len`: prompt + answer positions of a whole conversation.
    max_context: int = bounded(2, 1 << 20, default=4096)
    # Upper bound of text_decoder's (and token_embedding's) dynamic length = `get_max_seq_len`. The stock
    # MultimodalRunner never chunks a segment, so it must hold the longest one: a 30 s audio clip is 752 tokens.
    max_seq_len: int = bounded(1, 1 << 20, default=1024)
    # The KV cache's element type (KV_CACHE_DTYPES). int8 quantizes each new k/v row per token as it is written.
    kv_cache_dtype: str = "fp32"
    # Core ML only: the precision Core ML computes in ("fp16" or "fp32").
    compute_precision: str = "fp32"
    # Core ML only: deployment target (4-bit and per-group weights need iOS 18).
    minimum_deployment_target: str = "iOS18"


@dataclass(frozen=True)
class Fidelity:
    """What `megrez-mobile validate` demands of a bundle made with this recipe, against the eager fp32 model."""

    # Every encoder-like method (token_embedding, vision_encoder, audio_encoder, audio_preprocessor), flattened.
    encoder_min_cosine: float = bounded(-1.0, 1.0, default=0.98)
    encoder_min_snr_db: float = 14.0
    # text_decoder, teacher-forced over the fixed prompt set (>= 500 positions) on the reference's embeddings.
    decoder_min_top1: float = bounded(0.0, 1.0, default=0.95)
    decoder_max_kl: float = bounded(0.0, None, default=0.05)  # mean KL(eager || bundle) per position, in nats
    # Greedy tokens identical to eager's before the first difference (of 32 generated), end to end.
    decoder_min_greedy_match: int = bounded(0, 32, default=8)


@dataclass(frozen=True)
class Recipe:
    name: str
    backend: str
    rules: tuple[QuantRule, ...]
    options: ExportOptions = field(default_factory=ExportOptions)
    fidelity: Fidelity = field(default_factory=Fidelity)
    description: str = ""
    # Methods that run on another backend than `backend` (e.g. the encoders on Core ML, the decoder on XNNPACK).
    method_backends: Mapping[str, str] = field(default_factory=dict)
    # Where the recipe was read from (informational; not part of what it means).
    source: str = ""

    # --- reading ----------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> "Recipe":
        if not isinstance(data, Mapping):
            raise RecipeError(f"{source}: a recipe is a mapping with name, backend, rules and options")
        unknown = set(data) - {"name", "backend", "method_backends", "rules", "options", "fidelity", "description"}
        if unknown:
            raise RecipeError(f"{source}: unknown top-level key(s) {sorted(map(str, unknown))}; "
                              "use name, description, backend, method_backends, rules, options, fidelity")
        backend = data.get("backend")
        if backend not in BACKENDS:
            raise RecipeError(f"{source}: backend is {backend!r}; use one of {', '.join(BACKENDS)}")
        name = checked_value(data.get("name") or Path(source).stem, str, f"{source}: name", RecipeError)
        description = checked_value(data.get("description") or "", str, f"{source}: description", RecipeError)
        rules = data.get("rules") or []
        if not isinstance(rules, list):
            raise RecipeError(f"{source}: rules must be a list of {{pattern, scheme, ...}} mappings")
        rules = tuple(_parse_rule(r, i, source) for i, r in enumerate(rules))
        options = _parse_options(data.get("options") or {}, source)
        fidelity = _parse_fields(Fidelity, data.get("fidelity") or {}, f"{source}: fidelity")
        method_backends = _parse_method_backends(data.get("method_backends") or {}, source)
        return cls(name=name, backend=backend, rules=rules, options=options, fidelity=fidelity,
                   description=description.strip(), method_backends=method_backends, source=source)

    @classmethod
    def load(cls, name_or_path: str | Path) -> "Recipe":
        """A shipped recipe by name (`xnnpack-8da4w`) or a YAML file path."""
        path = Path(name_or_path)
        if not path.suffix:
            path = _find_named(str(name_or_path))
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist; shipped recipes: {', '.join(shipped_recipes())}")
        data = read_yaml(path, RecipeError, "Fix the recipe (see export/README.md) or start from a shipped one")
        return cls.from_dict(data, str(path))

    def with_overrides(self, **overrides: Any) -> "Recipe":
        """The recipe with option fields replaced (CLI flags); unknown fields are an error."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if not overrides:
            return self
        fields = {f.name for f in dataclasses.fields(ExportOptions)}
        bad = set(overrides) - fields
        if bad:
            raise RecipeError(f"unknown export option(s) {sorted(bad)}; known: {sorted(fields)}")
        return dataclasses.replace(self, options=_check_options(dataclasses.replace(self.options, **overrides),
                                                                "overrides"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "backend": self.backend,
                "method_backends": dict(self.method_backends),
                "rules": [{"pattern": r.pattern, "kind": r.kind, **dataclasses.asdict(r.quant)} for r in self.rules],
                "options": dataclasses.asdict(self.options), "fidelity": dataclasses.asdict(self.fidelity)}

    # --- applying ---------------------------------------------------------------------------------------------
    def scheme_for(self, module_name: str, kind: str) -> QuantScheme:
        for rule in self.rules:
            if rule.matches(module_name, kind):
                return rule.quant
        return QuantScheme()

    def requested_backend(self, method: str) -> str:
        """The backend the recipe asks for `method`: its own entry in `method_backends`, else `backend`."""
        return self.method_backends.get(method, self.backend)

    def method_backend(self, method: str) -> str:
        """The delegate that runs a method: the backend the recipe asks for, or XNNPACK where that backend cannot
        lower it. `token_embedding` is never delegated (ExecuTorch's quantized-embedding kernel does the lookup)."""
        if method == "token_embedding":
            return "portable"
        requested = self.requested_backend(method)
        return "xnnpack" if (requested, method) in XNNPACK_FALLBACKS else requested

    @property
    def backends(self) -> list[str]:
        """Every delegate the program needs at run time (what a runtime must have to load the bundle)."""
        return sorted({self.method_backend(m) for m in METHODS} - {"portable"})

    def check(self, linear_names: Iterable[str], embedding_names: Iterable[str]) -> None:
        """Refuse, before exporting, rules that match nothing and combinations the backend computes wrongly."""
        names = {"linear": list(linear_names), "embedding": list(embedding_names)}
        problems = []
        for rule in self.rules:
            if not any(rule.matches(n, rule.kind) for n in names[rule.kind]):
                problems.append(f"rule {rule.pattern!r} ({rule.kind}) matches no {rule.kind} module; {rule.kind} "
                                f"modules are named like {', '.join(_examples(names[rule.kind]))}")
        for name in names["embedding"]:
            q = self.scheme_for(name, "embedding")
            if q.dynamic_activations:
                problems.append(f"{name} is an embedding: {q.scheme} quantizes activations, which a table lookup "
                                "has none of; use 8w or 4w")
        for name in names["linear"]:
            q = self.scheme_for(name, "linear")
            backend = self.method_backend(METHOD_OF_PREFIX.get(name.split(".", 1)[0], "text_decoder"))
            reason = _backend_refuses(backend, q)
            if reason:
                method = METHOD_OF_PREFIX.get(name.split(".", 1)[0], "text_decoder")
                requested = self.requested_backend(method)
                fallback = "" if backend == requested else f" (its method falls back from {requested})"
                problems.append(f"{name}: {q.scheme} on {backend}{fallback}: {reason}")
        decoder_backend = self.method_backend("text_decoder")
        if self.options.kv_cache_dtype != "fp32" and decoder_backend not in KV_CACHE_BACKENDS:
            problems.append(f"options: kv_cache_dtype {self.options.kv_cache_dtype} with text_decoder on "
                            f"{decoder_backend}: {KV_CACHE_REFUSALS[decoder_backend]}; use kv_cache_dtype fp32 "
                            f"there, or the decoder on {' or '.join(KV_CACHE_BACKENDS)}")
        if problems:
            shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
            raise RecipeError(f"recipe {self.name} ({self.source}) cannot be exported:\n  " + "\n  ".join(shown))


def _backend_refuses(backend: str, q: QuantScheme) -> str | None:
    if backend == "xnnpack" and q.weight_only:
        return ("XNNPACK runs weight-only linears as an unscaled float GEMM on this stack and computes wrong numbers "
                "(executorch_notes §4); use 8da4w or 8da8w")
    if backend == "coreml" and q.dynamic_activations:
        return "Core ML has no dynamic activation quantization (lowering fails with KeyError: torch.int8); use 4w or 8w"
    if backend == "vulkan" and q.scheme == "8da8w":
        return "Vulkan quantizes linears as 8da4w or 4w only; use one of those"
    if backend == "portable" and q.scheme != "none":
        return "the portable backend has no quantized linear kernels; use a delegate backend or scheme none"
    return None


def _parse_method_backends(raw: Any, source: str) -> dict[str, str]:
    where = f"{source}: method_backends"
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{where} must be a mapping like {{vision_encoder: coreml}}")
    for method, backend in raw.items():
        if method not in METHODS or method == "token_embedding":
            raise RecipeError(f"{where}: {method!r} is not a delegated method; use "
                              f"{', '.join(m for m in METHODS if m != 'token_embedding')}")
        if backend not in BACKENDS:
            raise RecipeError(f"{where}: {method} backend is {backend!r}; use one of {', '.join(BACKENDS)}")
    return dict(raw)


def _parse_rule(raw: Any, i: int, source: str) -> QuantRule:
    where = f"{source}: rules[{i}]"
    if not isinstance(raw, Mapping) or "pattern" not in raw:
        raise RecipeError(f"{where} must be a mapping like {{pattern: 'llm.model.layers.*', scheme: 8da4w}}")
    unknown = set(raw) - {"pattern", "kind", "scheme", "group_size", "hqq"}
    if unknown:
        raise RecipeError(f"{where} has unknown key(s) {sorted(map(str, unknown))}; use pattern, kind, scheme, "
                          "group_size, hqq")
    rule = typed_fields(QuantRule, raw, where, RecipeError, only=("pattern", "kind"))
    quant = QuantScheme(**typed_fields(QuantScheme, raw, where, RecipeError))
    if rule.get("kind", "linear") not in KINDS:
        raise RecipeError(f"{where}: kind {rule['kind']!r} is unknown; use one of {', '.join(KINDS)}")
    if quant.scheme not in SCHEMES:
        raise RecipeError(f"{where}: scheme {quant.scheme!r} is unknown; use one of {', '.join(SCHEMES)}")
    if quant.group_size % 2:
        raise RecipeError(f"{where}: group_size {quant.group_size} must be 0 (per channel) or a positive even number")
    return QuantRule(rule["pattern"], quant, rule.get("kind", "linear"))


def _parse_fields(cls: type, raw: Any, where: str):
    """A typed config dataclass from a YAML mapping; unknown keys are an error that lists the known ones."""
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{where} must be a mapping")
    return cls(**typed_fields(cls, raw, where, RecipeError, unknown="error"))


def _parse_options(raw: Mapping[str, Any], source: str) -> ExportOptions:
    return _check_options(_parse_fields(ExportOptions, raw, f"{source}: options"), source)


def _check_options(o: ExportOptions, source: str) -> ExportOptions:
    if not 2 <= o.max_seq_len <= o.max_context:
        raise RecipeError(f"{source}: need 2 <= max_seq_len ({o.max_seq_len}) <= max_context ({o.max_context})")
    if o.compute_precision not in ("fp16", "fp32"):
        raise RecipeError(f"{source}: compute_precision must be fp16 or fp32")
    if o.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise RecipeError(f"{source}: options: kv_cache_dtype is {o.kv_cache_dtype!r}; use one of "
                          f"{', '.join(KV_CACHE_DTYPES)}")
    return o


def _examples(names: list[str]) -> list[str]:
    picks = [n for n in names if ".layers.0." in n or ".blocks.0." in n or "layers" not in n and "blocks" not in n]
    return (picks or names)[:4]


def _find_named(name: str) -> Path:
    if (RECIPES_DIR / f"{name}.yaml").is_file():
        return RECIPES_DIR / f"{name}.yaml"
    raise RecipeError(f"no recipe named {name!r}; shipped recipes: {', '.join(shipped_recipes())} "
                      "(or pass a path to a .yaml file)")


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
