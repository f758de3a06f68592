"""``lpips_frames`` loss term: the image plugin's LPIPS applied to every frame of a clip.

Frames are folded into the batch, ``(B, 3, T, H, W) -> (B·T, 3, H, W)``, and the mean over every
frame of every clip is returned, so a 1-frame clip gives the image term's value. Weights come from
local files exactly as for the image ``lpips`` term (``vgg_weights=`` / ``lin_weights=`` paths).
"""

from __future__ import annotations

from torch import Tensor

from core.loss_terms import LossInputs, LossTerm
from core.registry import LOSS_TERMS
from modalities.image.lpips import LPIPS

__all__ = ["FrameLPIPSLoss", "frames_as_images"]


def frames_as_images(x: Tensor) -> Tensor:
    """``(B, C, T, H, W) -> (B·T, C, H, W)`` (frame-major within each clip)."""
    if x.ndim != 5:
        raise ValueError(f"expected clips (B, C, T, H, W), got shape {tuple(x.shape)}")
    return x.transpose(1, 2).flatten(0, 1)


class FrameLPIPSLoss(LossTerm):
    """Mean per-frame LPIPS between the one-step estimate ``x0_hat`` and the ``reference``."""

    def __init__(self, lpips: LPIPS) -> None:
        super().__init__()
        self.lpips = lpips

    def forward(self, inputs: LossInputs) -> Tensor:
        return self.lpips(frames_as_images(inputs.x0_hat), frames_as_images(inputs.reference)).mean()


@LOSS_TERMS.register("lpips_frames")
def lpips_frames(vgg_weights: str | None = None, lin_weights: str | None = None, allow_random_weights: bool = False) -> FrameLPIPSLoss:
    """Per-frame LPIPS-VGG16 on clips (image LPIPS on frames); weights by path, see :class:`modalities.image.lpips.LPIPS`."""
    return FrameLPIPSLoss(LPIPS(vgg_weights, lin_weights, allow_random_weights=allow_random_weights))
