"""Image recipes."""
