"""Built-in modality plugins. Importing this package registers them.

Third-party plugins do not need to be listed here: they register through the
``difftok.modalities`` entry-point group (see ``core.registry``).
"""

from modalities import audio, image, video  # noqa: F401

__all__ = ["audio", "image", "video"]
