"""Importers for checkpoints written by the official DiTo and SSDD code (key renames only)."""
