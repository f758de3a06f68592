"""difftok core: modality-agnostic diffusion-autoencoder machinery.

Public API re-exported here; see ``docs/`` for the conventions (t = 0 data, t = 1 noise,
network time ``1000·t``, prediction ``u = x - (1 - sigma_min)·eps``).
"""

from core import nets as _nets  # noqa: F401  (registers conv_encoder / unet_decoder)
from core import loss_terms as _loss_terms  # noqa: F401
from core.autoencoder import DiffusionAutoencoder, InputError, SamplingConfig
from core.builder import AutoencoderConfig, ComponentConfig, LossTermConfig, build_autoencoder
from core.distill import DistillationConfig, distillation_losses, make_student
from core.ema import EMA
from core.flow.loss import TimeBucketLoss, flow_matching_loss, per_sample_mse
from core.flow.path import FlowPath, PathSample
from core.flow.time_samplers import LogitNormalTimeSampler, UniformTimeSampler, truncated_uniform
from core.interop.diffusers import DiffusersVAE
from core.latent.distribution import DecoderOutput, EncoderOutput, LatentDist
from core.latent.noise_sync import NoiseSyncConfig, NoiseSyncOutput, noise_sync
from core.latent.regularizers import IdentityLatent, KLLatent, LayerNormLatent
from core.latent.stats import LatentMoments, LatentStats, compute_latent_moments, compute_latent_stats
from core.pretrained import CheckpointMismatchError, from_pretrained, save_pretrained, write_latent_stats
from core.registry import (
    DECODERS,
    ENCODERS,
    LOSS_TERMS,
    MODALITIES,
    REGULARIZERS,
    TIME_SAMPLERS,
    DuplicateRegistrationError,
    Registry,
    create,
    list_models,
    load_plugins,
)
from core.samplers.grids import time_grid
from core.samplers.solvers import euler_solve, heun_solve, solve
from core.shapes import ShapeRule, upsample_nearest

__all__ = [
    "AutoencoderConfig", "CheckpointMismatchError", "ComponentConfig", "DECODERS", "DecoderOutput",
    "DiffusersVAE", "DiffusionAutoencoder", "DistillationConfig", "DuplicateRegistrationError", "EMA", "ENCODERS",
    "EncoderOutput", "FlowPath", "IdentityLatent", "InputError", "KLLatent", "LOSS_TERMS", "LatentDist",
    "LatentMoments", "LatentStats", "LayerNormLatent", "LogitNormalTimeSampler", "LossTermConfig", "MODALITIES",
    "NoiseSyncConfig", "NoiseSyncOutput", "PathSample", "REGULARIZERS", "Registry", "SamplingConfig", "ShapeRule",
    "TIME_SAMPLERS", "TimeBucketLoss", "UniformTimeSampler", "build_autoencoder", "compute_latent_moments", "compute_latent_stats",
    "create", "distillation_losses", "euler_solve", "flow_matching_loss", "from_pretrained", "heun_solve",
    "list_models", "load_plugins", "make_student", "noise_sync", "per_sample_mse", "save_pretrained",
    "solve", "time_grid", "truncated_uniform", "upsample_nearest", "write_latent_stats",
]
