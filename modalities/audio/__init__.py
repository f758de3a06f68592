"""Audio modality plugin: waveforms ``(B, C, L)`` in [-1, 1] with per-frame latents ``(B, C_z, L / hop)``.

:mod:`modalities.audio.models` registers the audio encoders/decoders and the loss terms
``mrstft`` / ``mel_l1``; :mod:`modalities.audio.modality` registers the ``audio`` modality
(soundfile + torchaudio data path, shards, metrics, previews, tool settings). Only this plugin
imports soundfile / torchaudio, lazily.
"""

from modalities.audio import models  # noqa: F401  (registers encoders / decoders / loss terms)
from modalities.audio import modality  # noqa: F401  (registers the 'audio' modality)
