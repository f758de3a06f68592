"""Video networks (registered on import)."""
