"""Adapters that let other libraries use a difftok tokenizer (none of them is imported here)."""

from core.interop.diffusers import DiffusersVAE, DiffusersVAEConfig

__all__ = ["DiffusersVAE", "DiffusersVAEConfig"]
