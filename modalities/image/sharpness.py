"""High-frequency energy of reconstructions relative to their references: a sharpness measure.

A flow decoder's one-step output is a conditional mean and is blurred; a well-trained multi-step
decode restores texture; an under-trained one adds speckle noise. PSNR cannot tell these apart (all
three can score similar PSNR), so the report also measures the energy of the discrete Laplacian,
the classic focus measure, on the 8-bit images: ``hf_ratio`` = Laplacian energy of the
reconstructions / that of the references. Below 1: blurrier than the original; 1: as much fine
detail; above 1: more high-frequency content than the original has (speckle or ringing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from modalities.image.preview import to_uint8

__all__ = ["HighFrequencyEnergy", "laplacian_energy"]

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)


def laplacian_energy(images: Tensor) -> Tensor:
    """Mean squared 4-neighbour Laplacian per image of ``(B, C, H, W)`` values (valid region only): ``(B,)``.

    Raises:
        ValueError: images are not 4-D or smaller than 3x3.
    """
    if images.ndim != 4 or images.shape[-1] < 3 or images.shape[-2] < 3:
        raise ValueError(f"laplacian_energy needs (B, C, H, W) images of at least 3x3 pixels, got shape {tuple(images.shape)}")
    channels = images.shape[1]
    kernel = _LAPLACIAN.to(images.device).expand(channels, 1, 3, 3)
    response = F.conv2d(images.double(), kernel, groups=channels)
    return response.square().flatten(1).mean(dim=1)


@dataclass
class HighFrequencyEnergy:
    """Accumulates :func:`laplacian_energy` of references and reconstructions on the 0..255 scale
    (a :class:`~core.eval.protocol.ReconstructionMetric`)."""

    reference_sum: float = 0.0
    reconstruction_sum: float = 0.0
    images: int = 0

    def update(self, reference: Tensor, reconstruction: Tensor) -> None:
        """Add a batch of [-1, 1] images; both are quantised to 8 bits first, like a saved file."""
        ref, rec = to_uint8(reference).double(), to_uint8(reconstruction).double()
        self.reference_sum += laplacian_energy(ref).sum().item()
        self.reconstruction_sum += laplacian_energy(rec).sum().item()
        self.images += ref.shape[0]

    def compute(self) -> dict[str, float]:
        """``hf_ratio`` (see the module docstring)."""
        if self.images == 0:
            raise ValueError("no images were evaluated")
        reference = max(self.reference_sum, 1e-12)  # a flat reference has no detail to compare against
        return {"hf_ratio": self.reconstruction_sum / reference}
