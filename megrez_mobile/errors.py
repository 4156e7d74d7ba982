"""Typed errors. Every error names the culprit (file, key, message index) and says what to do."""

from __future__ import annotations


class MegrezError(Exception):
    """Base class of every error this SDK raises on purpose."""


class CheckpointError(MegrezError):
    """A checkpoint directory is incomplete or does not match its config (missing shard, bad key, wrong dim)."""


class InputError(MegrezError, ValueError):
    """Something the user passed in (a message, an image, an audio clip) cannot be used."""


class ImageError(InputError):
    """An image could not be read or is unsafe to decode (truncated, not an image, decompression bomb)."""


class AudioError(InputError):
    """An audio clip could not be read or used (unreadable, truncated, empty, too long)."""


class ChatFormatError(InputError):
    """The messages do not follow the documented chat format."""


class ContextOverflowError(InputError):
    """The prompt does not fit into the model's context window."""


class RecipeError(MegrezError):
    """An export recipe is malformed, matches nothing, or asks a backend for something it computes wrongly."""


class ExportError(MegrezError):
    """A method could not be exported or lowered."""


class BundleError(MegrezError):
    """A bundle directory is incomplete, corrupted (size/checksum mismatch) or from an incompatible version."""


class DeviceError(MegrezError):
    """A device could not be profiled: bad spec, unreachable board, failed copy or install, missing adb or app."""


class OutputPathError(MegrezError, FileExistsError):
    """An output path cannot be written: it exists (and overwriting was not asked for), a parent is a regular file,
    its folder does not exist, or there is no permission. Raised before any work starts."""


class NumericalError(MegrezError):
    """A model produced NaN or infinite values (e.g. a checkpoint with NaN weights): its output would be garbage."""
