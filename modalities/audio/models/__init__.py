"""Audio networks and loss terms (registered on import)."""
