"""Audio recipes: ``python -m recipes.audio.<name>``."""
