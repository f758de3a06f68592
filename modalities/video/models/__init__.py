"""Video networks (registered on import): causal encoders, (2+1)-D flow decoders, per-frame LPIPS.

See :mod:`modalities.video.models.sizes` for the registered names and
:mod:`modalities.video.models.inflation` for initialising them from an image DiTo export.
"""

from modalities.video.models.decoder import VideoUNetDecoder
from modalities.video.models.encoder import CausalVideoEncoder
from modalities.video.models.inflation import inflate_state
from modalities.video.models.lpips_frames import FrameLPIPSLoss
from modalities.video.models.config import video_dito_config
from modalities.video.models.sizes import DECODER_SIZES, ENCODER_SIZES, video_decoder, video_encoder

__all__ = ["CausalVideoEncoder", "VideoUNetDecoder", "inflate_state", "FrameLPIPSLoss", "ENCODER_SIZES", "DECODER_SIZES",
           "video_encoder", "video_decoder", "video_dito_config"]
