"""The ``video`` modality registration (data, metrics, previews, tool settings)."""
