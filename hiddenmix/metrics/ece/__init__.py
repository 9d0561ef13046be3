"""The `ece` metric module (load it with `evaluate.load` on this folder)."""
