"""Video modality plugin: ``(B, 3, T, H, W)`` in [-1, 1], ``T = 1 + 4k`` (an image is a 1-frame video).

:mod:`modalities.video.models` registers the causal encoders, the (2+1)-D flow decoders and the
video loss terms; :mod:`modalities.video.modality` registers the ``video`` modality (decord data
path, shards, metrics, previews, tool settings). Only this plugin imports decord, lazily.
"""

from modalities.video import models  # noqa: F401  (registers encoders / decoders / loss terms)
from modalities.video import modality  # noqa: F401  (registers the 'video' modality)
