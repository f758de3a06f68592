"""Video recipes: ``python -m recipes.video.<name>``."""
