"""`Bundle.load(path).chat(messages)`: the bundle's model.pte run through `executorch.runtime`.

The same messages as eager `MegrezOmni.chat`, built by the same processor from the manifest, fed segment by
segment exactly as ExecuTorch's MultimodalRunner feeds them (token runs through token_embedding, each image
slice and audio clip through its encoder, each segment through text_decoder at the running position).

The KV cache lives inside the program and is kept between calls: a new call compares its prompt with what
the cache already holds and prefills only from the first position that differs (answers this session
generated are reused as their exact token ids), so a multi-turn chat costs only its new turn.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..bundle import MANIFEST_FILE, Manifest, read_manifest, verify_files
from ..config import PreprocessorConfig
from ..errors import AudioError, BundleError, ContextOverflowError, ImageError, InputError
from ..logs import quiet_library_logs, quiet_native_logs
from ..model.generation import GenerationResult, SamplingConfig, StreamFn, check_max_new_tokens, generate
from ..processing.image import max_slice_patches
from ..processing.processor import Message, MegrezInputs, MegrezProcessor, Segment
from ..processing.tokenizer import MegrezTokenizer

# What one cached position holds: a token id, or (kind, media digest, offset) for encoder outputs.
PositionKey = Any


def load_runtime_kernels() -> None:
    """Register the CPU kernels our programs use outside delegates (quantized embedding, llama custom ops)."""
    quiet_library_logs()
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    import executorch.kernels.quantized  # noqa: F401


def bundle_processor(directory: Path, manifest: Manifest) -> MegrezProcessor:
    """The bundle's front end (its tokenizer and preprocessor config), checked against the manifest's stop ids."""
    tokenizer_path = manifest.path_of(directory, manifest.tokenizer)
    processor = MegrezProcessor(MegrezTokenizer.from_file(tokenizer_path),
                                PreprocessorConfig.from_dict(manifest.front_end["preprocessor_config"]),
                                default_system_prompt=manifest.front_end.get("default_system_prompt"))
    if list(processor.stop_ids) != list(manifest.front_end["stop_ids"]):
        raise BundleError(f"{tokenizer_path} gives stop ids {list(processor.stop_ids)} but the "
                          f"manifest says {manifest.front_end['stop_ids']}: the tokenizer was replaced")
    return processor


def stock_inputs(plan, processor: MegrezProcessor) -> list:
    """A runner plan (processing/plan.py) as the stock MultimodalRunner's inputs: text, uint8 [1, 3, H, W] slices,
    log-mel [1, n_mels, F] clips (what an app hands ExecuTorch)."""
    from executorch.extension.llm.runner import make_audio_input, make_image_input, make_text_input

    images, clips = iter(plan.pixels), iter(plan.clips)
    makers = {"text": lambda entry: make_text_input(entry["text"]),
              "image": lambda _: make_image_input(next(images).unsqueeze(0).contiguous()),
              "audio": lambda _: make_audio_input(processor.log_mel(torch.from_numpy(next(clips))).unsqueeze(0)
                                                  .float().contiguous())}
    return [makers[entry["kind"]](entry) for entry in plan.inputs]


_SCALAR_TYPE_FLOAT = 6  # ExecuTorch's ScalarType::Float (Byte is 0)


class Bundle:
    """A verified bundle with its program loaded; also a chat session (the KV cache is its state)."""

    def __init__(self, directory: Path, manifest: Manifest, program, processor: MegrezProcessor):
        self.directory, self.manifest, self.processor = directory, manifest, processor
        self._program = program
        self._methods: dict[str, Any] = {}
        self.max_context = int(manifest.context["max_context"])
        self.max_seq_len = int(manifest.context["max_seq_len"])
        self._cached: list[PositionKey] = []
        self._answers: dict[str, list[int]] = {}

    @classmethod
    def load(cls, path: str | Path, verify_checksums: bool = True, threads: int | None = None) -> "Bundle":
        """Read and verify the manifest and every file (sizes always, sha256 unless told not to), then load."""
        directory = Path(path)
        manifest = read_manifest(directory)
        verify_files(directory, manifest, checksums=verify_checksums)
        # The very files just verified are the ones loaded (the names come from the manifest, checked plain).
        program_path = manifest.path_of(directory, manifest.program.file)
        processor = bundle_processor(directory, manifest)
        load_runtime_kernels()
        from executorch.runtime import Runtime

        if threads:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(threads)
        try:
            with quiet_native_logs():
                program = Runtime.get().load_program(program_path)
        except Exception as e:  # noqa: BLE001 - the runtime raises bare RuntimeErrors
            raise BundleError(f"ExecuTorch could not load {program_path} ({type(e).__name__}: {e}). "
                              f"It needs the {' and '.join(manifest.backends)} backend(s); the Python wheel has XNNPACK and "
                              "portable only (Vulkan and Core ML bundles run on devices).") from e
        bundle = cls(directory, manifest, program, processor)
        bundle._check_program_constants()
        return bundle

    def _check_program_constants(self) -> None:
        """The manifest's context must be what the program was built for: a larger one fails later with a bare
        runtime code, deep inside a chat (the KV cache and the dynamic-shape bound are fixed in the program)."""
        path = self.directory / self.manifest.program_file
        for constant, key in (("get_max_context_len", "max_context"), ("get_max_seq_len", "max_seq_len")):
            if constant not in self._program.method_names:
                raise BundleError(f"{path} has no {constant} method: it was not exported by megrez-mobile")
            actual = int(self.run(constant))
            if actual != self.manifest.context[key]:
                raise BundleError(f"{self.directory / MANIFEST_FILE}: context.{key} is {self.manifest.context[key]} "
                                  f"but {path} was built for {actual} ({constant}); the manifest was edited or "
                                  "belongs to another export. Re-export the bundle.")

    # --- the program's methods ------------------------------------------------------------------------------
    @property
    def method_names(self) -> list[str]:
        return sorted(self._program.method_names)

    def method(self, name: str):
        if name not in self._methods:
            if name not in self._program.method_names:
                raise BundleError(f"{self.directory / self.manifest.program_file} has no method {name!r}")
            try:
                with quiet_native_logs():
                    self._methods[name] = self._program.load_method(name)
            except Exception as e:  # noqa: BLE001
                raise BundleError(f"loading method {name} of {self.directory / self.manifest.program_file} failed "
                                  f"({type(e).__name__}: {e}); its backend ({self._method_backend(name)}) may not "
                                  "be available in this runtime") from e
        return self._methods[name]

    def _method_backend(self, name: str) -> str:
        return next((m.backend for m in self.manifest.program.methods if m.name == name), self.manifest.program.backend)

    def run(self, name: str, *inputs: torch.Tensor) -> torch.Tensor:
        return self.method(name).execute(list(inputs))[0]

    def embed_tokens(self, token_ids: Sequence[int]) -> torch.Tensor:
        return self.run("token_embedding", torch.tensor([list(token_ids)], dtype=torch.long))

    def encode_image_slice(self, slice_chw: torch.Tensor) -> torch.Tensor:
        """uint8 [3, H, W] -> [1, 64, D]."""
        image = self.processor.config.image
        side, most, patch = image.max_slice_side, max_slice_patches(image), image.patch_size
        if slice_chw.dtype != torch.uint8 or slice_chw.dim() != 3 or max(slice_chw.shape[1:]) > side:
            raise ImageError(f"vision_encoder takes one uint8 [3, H, W] slice with sides <= {side}; got "
                             f"{slice_chw.dtype} {list(slice_chw.shape)}. Use MegrezProcessor.slice_image.")
        patches = (slice_chw.shape[1] // patch) * (slice_chw.shape[2] // patch)
        if not 2 <= patches <= most:
            raise ImageError(f"vision_encoder takes slices of 2 to {most} patches of {patch}×{patch} px (the most "
                             f"the slicer makes; the program is sized for it); got {list(slice_chw.shape)}, "
                             f"{patches} patches. Use MegrezProcessor.slice_image.")
        return self.run("vision_encoder", slice_chw.unsqueeze(0).to(self.vision_pixel_dtype).contiguous())

    @functools.cached_property
    def vision_pixel_dtype(self) -> torch.dtype:
        """What vision_encoder takes, read from the program as runners do: uint8, or float32 (the same 0-255
        values) where it runs on Core ML, which has no uint8 inputs."""
        dtype = self._program.metadata("vision_encoder").input_tensor_meta(0).dtype()
        return torch.float32 if int(dtype) == _SCALAR_TYPE_FLOAT else torch.uint8

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [n_mels, F] of one clip -> [1, F/4 + 2, D]."""
        max_frames = self.processor.config.audio.max_frames
        if mel.dim() != 2 or not 4 <= mel.shape[1] <= max_frames:
            raise AudioError(f"audio_encoder takes one clip's log-mel [n_mels, F<={max_frames}]; got {list(mel.shape)}")
        return self.run("audio_encoder", mel.unsqueeze(0).float().contiguous())

    def decode(self, embeds: torch.Tensor, start: int) -> torch.Tensor:
        """Run text_decoder on [1, T, D] at positions start..start+T-1 -> last logits [V]."""
        t = embeds.shape[1]
        if start + t > self.max_context:
            raise ContextOverflowError(f"positions {start}..{start + t - 1} do not fit the bundle's context of "
                                       f"{self.max_context}; reset() the session or re-export with --max-context")
        return self.run("text_decoder", embeds, torch.tensor([start], dtype=torch.long))[0]

    # --- prefill --------------------------------------------------------------------------------------------
    def _prefill_segments(self, segments: list[Segment], keys: list[PositionKey]) -> torch.Tensor:
        """Prefill from the first position whose key differs from the cache; returns the last logits."""
        reuse = _common_prefix(self._cached, keys)
        if reuse == len(keys):  # identical prompt: recompute the last position to get its logits
            reuse -= 1
        position, logits = 0, None
        for seg in segments:
            end = position + seg.length
            if end <= reuse:
                position = end
                continue
            if seg.kind == "tokens":
                start = max(position, reuse)
                ids = seg.token_ids[start - position:]
                for i in range(0, len(ids), self.max_seq_len):  # our runtime may chunk; the stock runner cannot
                    chunk = ids[i:i + self.max_seq_len]
                    logits = self.decode(self.embed_tokens(chunk), start + i)
            else:  # an encoder segment is recomputed whole (its positions depend on one encoder call)
                feats = self.encode_image_slice(seg.media) if seg.kind == "image" else self.encode_audio(seg.media)
                if feats.shape[1] != seg.length:
                    raise InputError(f"{seg.kind} encoder gave {feats.shape[1]} embeddings for a placeholder of "
                                     f"{seg.length}; build inputs with MegrezProcessor.build_inputs")
                logits = self.decode(feats, position)
            position = end
        self._cached = list(keys)
        return logits

    # --- chat -----------------------------------------------------------------------------------------------
    def generate(self, messages: Sequence[Message], max_new_tokens: int = 100,
                 sampling: SamplingConfig = SamplingConfig(), stream: StreamFn | None = None) -> GenerationResult:
        """One assistant turn for `messages`, continuing the cached context where the messages share it."""
        check_max_new_tokens(max_new_tokens)
        inputs = self.processor.build_inputs(messages, answer_token_ids=self._answers)
        return self.generate_from_inputs(inputs, max_new_tokens, sampling, stream)

    def generate_from_inputs(self, inputs: MegrezInputs, max_new_tokens: int = 100,
                             sampling: SamplingConfig = SamplingConfig(),
                             stream: StreamFn | None = None) -> GenerationResult:
        if inputs.num_tokens >= self.max_context:
            raise ContextOverflowError(
                f"the prompt is {inputs.describe()}, but this bundle's context holds {self.max_context} positions and "
                "at least one must stay free for the answer. Shorten the text, use fewer/shorter audio clips or "
                "fewer images, drop earlier turns, or re-export with a larger --max-context.")
        keys = position_keys(inputs.segments)

        def prefill() -> torch.Tensor:
            return self._prefill_segments(inputs.segments, keys)

        def decode_step(token_id: int, position: int) -> torch.Tensor:
            logits = self.decode(self.embed_tokens([token_id]), position)
            self._cached.append(token_id)
            return logits

        result = generate(prefill, decode_step, inputs.input_ids[0].tolist(), self.processor.tokenizer,
                          self.processor.stop_ids, self.max_context, sampling, max_new_tokens, stream)
        self._answers[result.text] = result.token_ids
        return result

    def chat(self, messages: Sequence[Message], sampling: bool = False, max_new_tokens: int = 100,
             temperature: float = 0.7, top_p: float = 0.8, top_k: int = 100, repetition_penalty: float = 1.0,
             stream: StreamFn | None = None, seed: int | None = None) -> str:
        """The same contract as `MegrezOmni.chat`, running the bundle's program."""
        cfg = SamplingConfig(sampling=sampling, temperature=temperature, top_p=top_p, top_k=top_k,
                             repetition_penalty=repetition_penalty, seed=seed)
        return self.generate(messages, max_new_tokens, cfg, stream).text

    def reset(self) -> None:
        """Forget the cached conversation (the next call prefills from position 0)."""
        self._cached, self._answers = [], {}

    @property
    def cached_positions(self) -> int:
        return len(self._cached)


def position_keys(segments: list[Segment]) -> list[PositionKey]:
    keys: list[PositionKey] = []
    for seg in segments:
        if seg.kind == "tokens":
            keys.extend(seg.token_ids)
        else:
            digest = hashlib.sha256(seg.media.contiguous().numpy().tobytes()).hexdigest()
            shape = tuple(seg.media.shape)
            keys.extend((seg.kind, digest, shape, i) for i in range(seg.length))
    return keys


def _common_prefix(a: list, b: list) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    # Never resume inside an encoder segment: its embeddings come from one call over the whole input.
    while 0 < n < len(b) and isinstance(b[n], tuple) and b[n][3] != 0:
        n -= 1
    return n

