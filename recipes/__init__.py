"""Runnable experiment recipes: ``python -m recipes.<modality>.<name> key=value ...``."""
