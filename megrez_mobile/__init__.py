"""Megrez Mobile: Megrez-3B-Omni on phones and edge boards with ExecuTorch."""

__version__ = "0.1.0"

from .config import MegrezConfig, PreprocessorConfig  # noqa: E402
from .errors import (AudioError, ChatFormatError, CheckpointError, ContextOverflowError, ImageError,  # noqa: E402
                     InputError, MegrezError)
from .model.omni import MegrezOmni  # noqa: E402
from .processing.processor import MegrezProcessor  # noqa: E402

__all__ = ["MegrezOmni", "MegrezProcessor", "MegrezConfig", "PreprocessorConfig", "MegrezError", "CheckpointError",
           "InputError", "ImageError", "AudioError", "ChatFormatError", "ContextOverflowError"]
