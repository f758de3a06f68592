"""Audio networks and loss terms (registered on import).

- :mod:`.strided_encoder`: ``strided_conv1d_encoder`` (DAC-style, arbitrary strides, optional causal padding).
- :mod:`.sizes`: ``audio_tiny`` / ``audio_s`` / ``audio_b44k`` / ``audio_s50hz`` encoder/decoder pairs and
  :func:`~modalities.audio.models.sizes.audio_config`.
- :mod:`.loss_terms`: ``mrstft`` and ``mel_l1``.
"""

from modalities.audio.models import loss_terms, sizes, strided_encoder  # noqa: F401  (registration)
from modalities.audio.models.sizes import AUDIO_SIZES, AudioSize, audio_config, audio_size

__all__ = ["AUDIO_SIZES", "AudioSize", "audio_config", "audio_size"]
