"""The `f1` metric module (load it with `evaluate.load` on this folder)."""
