"""Image modality plugin: ``(B, 3, H, W)`` in [-1, 1].

Registers the ``image`` modality (folder / bundled-demo data, PNG previews, PSNR/SSIM/LPIPS metrics on
8-bit images, FID Inception features, the offline tools' image settings), the DiTo presets
(:mod:`modalities.image.dito`: encoder ``ldm_f8c4``, decoders ``dito_tiny/b/l/xl`` — the core's
dimension-generic ``conv_encoder``/``unet_decoder`` at fixed sizes), SSDD's U-ViT decoders
(``ssdd_*``) and KL encoders (``kl_f8c4``, ``kl_f16c4``), and the image loss term ``lpips``
(LPIPS-VGG16) and the DINOv2 target of core's ``repa`` term.
"""

from __future__ import annotations

from typing import Any

from core.modality import Modality, ToolSettings, datamodule_eval_split
from core.registry import MODALITIES
from modalities.image import dito  # noqa: F401  (registers the DiTo encoder/decoders)
from modalities.image import dinov2 as _dinov2_target  # noqa: F401  (registers the REPA target 'dinov2')
from modalities.image import lpips as _lpips_term  # noqa: F401  (registers the loss term 'lpips')
from modalities.image.data import ImageDataModule
from modalities.image.eval_suite import ImageEvalSettings, select_image_samples
from modalities.image.fid import image_feature_extractor
from modalities.image.latent_cache import ImageCacheLatentsSettings, image_cache_inputs
from modalities.image.latent_stats import ImageLatentStatsSettings
from modalities.image.metrics import image_metric_suite
from modalities.image.preview import EIGHT_BIT, save_grid, write_image_preview, write_image_samples
from modalities.image.ssdd import sizes as _ssdd_sizes  # noqa: F401  (registers ssdd_* decoders)
from modalities.image.ssdd import encoders as _ssdd_encoders  # noqa: F401  (registers kl_f8c4 / kl_f16c4)

__all__ = ["image", "make_image_datamodule"]


def make_image_datamodule(cfg: Any, seed: int, batch_size: int) -> ImageDataModule:
    """Datamodule factory used by ``core.training.train``."""
    return ImageDataModule(cfg, seed=seed, batch_size=batch_size)



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
        description="RGB images (B, 3, H, W) in [-1, 1]",
        held_out_dataset=datamodule_eval_split,
        reconstruction_metrics=image_metric_suite,
        quantization=EIGHT_BIT,
        feature_extractor=image_feature_extractor,
        write_grid=save_grid,
        select_eval_samples=select_image_samples,
        cache_inputs=image_cache_inputs,
        tool_settings=ToolSettings(evaluate=ImageEvalSettings, latent_stats=ImageLatentStatsSettings,
                                   cache_latents=ImageCacheLatentsSettings),
    )
