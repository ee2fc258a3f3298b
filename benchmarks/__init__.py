"""Scripts that print figures: `python -m benchmarks.engine`, `benchmarks.imaging`,
`benchmarks.app` (one JSON line each)."""
