"""Full-size measurements (results in BENCHMARKS.md). A package so that `python -m benchmarks.<module>` works; the
scripts in it still run as files (`python benchmarks/encoder.py`)."""
