"""Memory fit planning (issue 5): GGUF header facts, the per-device memory plan, the offline model catalog, and
``python -m generators fit``."""
