"""Image modality plugin: ``(B, 3, H, W)`` in [-1, 1].

Registers the ``image`` modality (folder / bundled-demo data, PNG previews), the DiTo presets
(:mod:`modalities.image.dito`: encoder ``ldm_f8c4``, decoders ``dito_tiny/b/l/xl`` — the core's
dimension-generic ``conv_encoder``/``unet_decoder`` at fixed sizes), SSDD's U-ViT decoders
(``ssdd_*``) and KL encoders (``kl_f8c4``, ``kl_f16c4``), and the image loss term ``lpips``
(LPIPS-VGG16) and the DINOv2 target of core's ``repa`` term.
"""

from __future__ import annotations

from typing import Any

from core.modality import Modality
from core.registry import MODALITIES
from modalities.image import dito  # noqa: F401  (registers the DiTo encoder/decoders)
from modalities.image import dinov2 as _dinov2_target  # noqa: F401  (registers the REPA target 'dinov2')
from modalities.image import lpips as _lpips_term  # noqa: F401  (registers the loss term 'lpips')
from modalities.image.data import ImageDataModule
from modalities.image.evaluate import evaluate_reconstructions
from modalities.image.preview import write_image_preview, write_image_samples
from modalities.image.ssdd import sizes as _ssdd_sizes  # noqa: F401  (registers ssdd_* decoders)
from modalities.image.ssdd import encoders as _ssdd_encoders  # noqa: F401  (registers kl_f8c4 / kl_f16c4)

__all__ = ["image", "make_image_datamodule", "evaluate_held_out"]


def make_image_datamodule(cfg: Any, seed: int, batch_size: int) -> ImageDataModule:
    """Datamodule factory used by ``core.training.train``."""
    return ImageDataModule(cfg, seed=seed, batch_size=batch_size)


def evaluate_held_out(autoencoder: Any, datamodule: ImageDataModule, num_steps: int) -> dict[str, float]:
    """PSNR (mean per image) and SSIM of held-out reconstructions with ``num_steps`` Euler steps."""
    device = next(autoencoder.parameters()).device
    metrics = evaluate_reconstructions(autoencoder, datamodule.eval_dataset(), steps=(num_steps,), device=device)
    m = metrics[f"steps_{num_steps}"]
    return {"psnr": m["psnr_mean_per_image"], "ssim": m["ssim"]}


@MODALITIES.register("image")
def image() -> Modality:
    """RGB images, 2 spatial dims, [-1, 1]."""
    return Modality(
        name="image",
        spatial_dims=2,
        channels=3,
        make_datamodule=make_image_datamodule,
        write_preview=write_image_preview,
        write_samples=write_image_samples,
        preview_suffix=".png",
        evaluate=evaluate_held_out,
        description="RGB images (B, 3, H, W) in [-1, 1]",
    )
