"""Megrez Mobile: Megrez-3B-Omni on phones and edge boards with ExecuTorch."""

__version__ = "0.1.0"
