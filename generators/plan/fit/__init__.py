"""Memory fit planning (issue 5): GGUF header facts, the per-device memory plan, the offline model catalog, what
each server asks of the planner, and the fit check render runs (``python -m generators fit`` prints the plans)."""
