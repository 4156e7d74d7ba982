"""Megrez Mobile: Megrez-3B-Omni on phones and edge boards with ExecuTorch."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Resolved on first use (PEP 562) so `megrez-mobile --help` and `import megrez_mobile.errors` stay instant
# instead of importing torch, librosa and FFmpeg.
_EXPORTS = {
    "MegrezOmni": "megrez_mobile.model.omni",
    "MegrezProcessor": "megrez_mobile.processing.processor",
    "MegrezConfig": "megrez_mobile.config",
    "PreprocessorConfig": "megrez_mobile.config",
    "Bundle": "megrez_mobile.runtime.session",
    "Recipe": "megrez_mobile.export.recipe",
    "export_bundle": "megrez_mobile.export.pipeline",
    **{name: "megrez_mobile.errors" for name in (
        "MegrezError", "CheckpointError", "InputError", "ImageError", "AudioError", "ChatFormatError",
        "ContextOverflowError", "RecipeError", "ExportError", "BundleError", "DeviceError", "OutputPathError",
        "NumericalError")},
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'megrez_mobile' has no attribute {name!r}")
