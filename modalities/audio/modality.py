"""The ``audio`` modality registration (data, metrics, previews, tool settings)."""
