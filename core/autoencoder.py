"""``DiffusionAutoencoder``: encoder + latent regularizer + flow decoder, modality agnostic.

Data layout is ``(B, C, *spatial)`` with 1, 2 or 3 spatial dims; nothing here knows which.
Encoders must expose ``in_channels``, ``spatial_dims`` and either ``shape_rule`` (a
:class:`~core.shapes.ShapeRule`, per-axis and causal factors) or ``downsample_factor`` (one int for
every axis); decoders are called as ``decoder(x_t, time_scale * t, z)`` and return
``u = x - (1 - sigma_min)·eps``. Saving and loading live in :mod:`core.pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from core.feature_hooks import capture_features, requested_feature_modules
from core.flow.loss import per_sample_mse
from core.flow.path import FlowPath
from core.flow.time_samplers import TimeSampler, UniformTimeSampler
from core.input_checks import InputError, check_finite, check_float_tensor, check_noise, resolve_num_steps
from core.latent.distribution import DecoderOutput, EncoderOutput
from core.latent.noise_sync import NoiseSyncConfig, noise_sync
from core.latent.regularizers import LatentRegularizer
from core.latent.stats import LatentStats
from core.loss_terms import LossInputs
from core.samplers.grids import time_grid
from core.samplers.solvers import initial_noise, solve
from core.shapes import ShapeRule
from core.tiling import TileSpec, tiled_velocity

__all__ = ["DiffusionAutoencoder", "SamplingConfig", "InputError", "encoder_shape_rule"]

# latents of any tokenizer (LayerNorm'd or KL) are O(1); far beyond this the decoder output is NaN or noise
LATENT_WARN_ABOVE = 1e3


@dataclass
class SamplingConfig:
    """Default decode settings (DiTo: 50 uniform Euler steps; SSDD: 8 power-2 steps).

    Not frozen: it is also a Hydra/OmegaConf structured-config node (``model.sampling.num_steps=8``),
    and OmegaConf makes frozen dataclass nodes read-only.

    Attributes:
        num_steps: solver steps.
        grid: ``"uniform"`` or ``"power"`` time grid.
        power: exponent of the power grid.
        solver: ``"euler"`` or ``"heun"``.
    """

    num_steps: int = 50
    grid: str = "uniform"
    power: float = 2.0
    solver: str = "euler"


class DiffusionAutoencoder(nn.Module):
    """A tokenizer whose decoder is a flow-matching model.

    Args:
        encoder: ``(B, C, *S) -> (B, raw_channels, *S/f)``.
        regularizer: raw latent -> :class:`~core.latent.distribution.LatentDist` (+ penalty).
        decoder: velocity network ``decoder(x_t, 1000·t, z)``.
        path: flow path (``sigma_min``, time scale).
        time_sampler: training time distribution.
        noise_sync: noise-synchronization settings, or None to disable.
        regularizer_weight: weight of the regularizer penalty (KL weight).
        loss_terms: auxiliary terms by name, each ``(weight, module)``.
        sampling: default decode settings.
        latent_stats: scalar shift/scale for downstream generators.
        config: the builder config this model was made from (stored by
            :func:`core.pretrained.save_pretrained`; load with :func:`core.pretrained.from_pretrained`).
    """

    def __init__(
        self,
        encoder: nn.Module,
        regularizer: LatentRegularizer,
        decoder: nn.Module,
        *,
        path: FlowPath | None = None,
        time_sampler: TimeSampler | None = None,
        noise_sync: NoiseSyncConfig | None = None,
        regularizer_weight: float = 1.0,
        loss_terms: dict[str, tuple[float, nn.Module]] | None = None,
        sampling: SamplingConfig | None = None,
        latent_stats: LatentStats | None = None,
        config: Any = None,
    ) -> None:
        super().__init__()
        for attr in ("in_channels", "spatial_dims"):
            if not hasattr(encoder, attr):
                raise TypeError(f"encoder {type(encoder).__name__} must define '{attr}'")
        self.shape_rule = encoder_shape_rule(encoder)
        self.encoder, self.regularizer, self.decoder = encoder, regularizer, decoder
        self.path = path or FlowPath()
        self.time_sampler = time_sampler or UniformTimeSampler()
        self.noise_sync = noise_sync
        self.regularizer_weight = regularizer_weight
        loss_terms = loss_terms or {}
        self.loss_terms = nn.ModuleDict({name: module for name, (_, module) in loss_terms.items()})
        self.loss_weights = {name: float(weight) for name, (weight, _) in loss_terms.items()}
        self.sampling = sampling or SamplingConfig()
        self.config = config
        self.latent_stats = latent_stats or LatentStats()

    # ----------------------------------------------------------------------------------- shapes
    @property
    def in_channels(self) -> int:
        return int(self.encoder.in_channels)

    @property
    def spatial_dims(self) -> int:
        return int(self.encoder.spatial_dims)

    @property
    def downsample_factor(self) -> int:
        """The one factor of an isotropic shape rule (every image tokenizer); see :attr:`shape_rule`."""
        if not self.shape_rule.is_isotropic:
            raise ValueError(
                f"this tokenizer has no single downsample factor ({self.shape_rule.describe()}); use tok.shape_rule"
            )
        return self.shape_rule.factors[0]

    @property
    def latent_channels(self) -> int:
        return int(self.encoder.out_channels) // self.regularizer.raw_channels_per_latent

    def latent_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Latent shape for an input shape ``(B, C, *S)`` (or ``(C, *S)``)."""
        batch, spatial = input_shape[:-self.spatial_dims - 1], input_shape[-self.spatial_dims:]
        return (*batch, self.latent_channels, *self.shape_rule.latent(spatial))

    def data_shape(self, latent_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Data shape decoded from latents ``(B, C_z, *S/f)`` (or ``(C_z, *S/f)``): the inverse of :meth:`latent_shape`."""
        batch, spatial = latent_shape[:-self.spatial_dims - 1], latent_shape[-self.spatial_dims:]
        return (*batch, self.in_channels, *self.shape_rule.data(spatial))

    def check_input(self, x: Tensor) -> None:
        """Raise :class:`InputError` with the fix when ``x`` cannot be encoded (warn when it is far outside [-1, 1])."""
        check_float_tensor(x, "input")
        want = 2 + self.spatial_dims
        if x.ndim != want:
            raise InputError(
                f"expected a (B, C, {self.spatial_dims} spatial dims) tensor with {want} dims, got shape "
                f"{tuple(x.shape)}; add a batch dim with x[None] or check the modality"
            )
        if x.shape[1] != self.in_channels:
            raise InputError(
                f"expected {self.in_channels} channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
                f"convert the input (e.g. grayscale -> RGB with x.expand(-1, 3, ...)) or use a tokenizer "
                f"built with in_channels={x.shape[1]}"
            )
        problem = self.shape_rule.problem(tuple(x.shape[2:]))
        if problem is not None:
            raise InputError(problem)
        check_finite(x, "input")

    # ----------------------------------------------------------------------------------- latent stats
    @property
    def latent_stats(self) -> LatentStats:
        """Scalar shift/scale between tokenizer latents and generator latents (saved by
        :func:`core.pretrained.save_pretrained`)."""
        return self._latent_stats

    @latent_stats.setter
    def latent_stats(self, stats: LatentStats) -> None:
        if not isinstance(stats, LatentStats):
            raise TypeError(f"latent_stats must be a core.latent.stats.LatentStats, got {type(stats).__name__}; "
                            f"write tok.latent_stats = LatentStats(shift=..., scale=...)")
        self._latent_stats = stats
        config = self.config  # keep tok.config (the builder config) in step with the stats
        if is_dataclass(config) and isinstance(getattr(config, "latent_stats", None), LatentStats):
            if config.latent_stats != stats:
                self.config = replace(config, latent_stats=replace(stats))

    def normalize_latents(self, z: Tensor) -> Tensor:
        """Tokenizer latents -> generator latents: ``(z - shift) / scale`` with ``self.latent_stats``.

        A latent generator (DiT) is trained on and samples in this normalised space. DiTo's LayerNorm
        latents have shift 0 and scale 1, so this is the identity; KL latents get their dataset stats
        from ``python -m recipes.image.latent_stats``. Any shape and dtype; the result keeps both.
        """
        return self.latent_stats.normalize(z)

    def denormalize_latents(self, z: Tensor) -> Tensor:
        """Generator latents -> tokenizer latents (``z * scale + shift``), the inverse of
        :meth:`normalize_latents`; apply it to generated latents before :meth:`decode`."""
        return self.latent_stats.denormalize(z)

    # ----------------------------------------------------------------------------------- API
    def encode(self, x: Tensor) -> EncoderOutput:
        """Encode data ``(B, C, *S)`` in [-1, 1] to a latent distribution ``(B, C_z, *S/f)``."""
        self.check_input(x)
        return EncoderOutput(latent_dist=self.regularizer(self.encoder(x)))

    def velocity(self, x_t: Tensor, t: Tensor, z: Tensor) -> Tensor:
        """Network output ``u`` at data-space time ``t`` in [0, 1] (scaled here by the path)."""
        return self.decoder(x_t, self.path.network_time(t), z)

    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        num_steps: int | None = None,
        *,
        grid: str | None = None,
        generator: torch.Generator | None = None,
        solver: str | None = None,
        noise: Tensor | None = None,
        tile: TileSpec = None,
        overlap: TileSpec = None,
    ) -> DecoderOutput:
        """Sample data from latents ``z`` by integrating the flow ODE from t = 1 to 0 (no gradients).

        Args:
            z: latents ``(B, C_z, *S/f)`` (tokenizer space, not normalised for generators).
            num_steps: solver steps, a positive int (None: ``self.sampling.num_steps``).
            grid: ``"uniform"`` or ``"power"``.
            generator: seeds the initial noise, making decoding deterministic.
            solver: ``"euler"`` or ``"heun"``.
            noise: explicit initial noise of the decoded data's shape (overrides ``generator``).
            tile, overlap: decode in latent tiles of this size (int, or one entry per latent axis,
                None = whole axis) sharing one full-size noise, memory bounded by a tile
                (:mod:`core.tiling`); overlap defaults to ``tile // 4``.
        """
        check_float_tensor(z, "latents z")
        if z.ndim != 2 + self.spatial_dims or z.shape[1] != self.latent_channels:
            raise InputError(
                f"expected latents of shape (B, {self.latent_channels}, {self.spatial_dims} spatial dims), got {tuple(z.shape)}"
            )
        check_finite(z, "latents z", expected="the O(1) range of tokenizer latents (denormalize generator latents first)",
                     warn_above=LATENT_WARN_ABOVE)
        cfg = self.sampling
        steps = resolve_num_steps(num_steps, cfg.num_steps)
        times = time_grid(steps, grid or cfg.grid, power=cfg.power, device=z.device)
        shape = self.data_shape(tuple(z.shape))
        if noise is not None:
            check_noise(noise, shape, z)
        x_init = noise if noise is not None else initial_noise(shape, generator=generator, device=z.device, dtype=z.dtype)
        velocity = self.velocity if tile is None else tiled_velocity(self, tuple(z.shape), tile=tile, overlap=overlap)
        out = solve(solver or cfg.solver, lambda x, t, c: velocity(x, t, c), x_init, times, z)
        return DecoderOutput(sample=out.sample, num_function_evals=out.num_function_evals)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, num_steps: int | None = None, *, sample_posterior: bool = False, **decode_kwargs: Any) -> DecoderOutput:
        """Encode then decode; uses the latent mode unless ``sample_posterior``."""
        dist = self.encode(x).latent_dist
        z = dist.sample(decode_kwargs.get("generator")) if sample_posterior else dist.mode()
        return self.decode(z, num_steps, **decode_kwargs)

    def training_losses(self, x: Tensor, *, generator: torch.Generator | None = None, reference: Tensor | None = None) -> dict[str, Tensor]:
        """One flow-matching training forward.

        Returns:
            ``loss`` (weighted total), ``fm``, ``regularizer`` and every auxiliary term by name
            (scalars), plus ``t`` and ``fm_per_sample`` ``(B,)`` for per-time monitoring.
        """
        dist = self.encode(x).latent_dist  # validates x
        z = dist.sample(generator)  # (B, C_z, *S/f)
        if self.noise_sync is not None and self.noise_sync.p > 0:
            synced = noise_sync(z, path=self.path, config=self.noise_sync, time_sampler=self.time_sampler, generator=generator)
            z, t = synced.z, synced.t
        else:
            t = self.time_sampler(x.shape[0], device=x.device, generator=generator)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        ps = self.path.sample(x=x, noise=noise, t=t)
        with capture_features(self.decoder, requested_feature_modules(self.loss_terms.values(), self.decoder)) as features:
            u = self.velocity(ps.x_t, t, z)  # (B, C, *S)
        fm_per_sample = per_sample_mse(u, ps.target)
        losses: dict[str, Tensor] = {"fm": fm_per_sample.mean()}
        total = losses["fm"]
        penalty = self.regularizer.penalty(dist)
        losses["regularizer"] = penalty
        total = total + self.regularizer_weight * penalty
        if len(self.loss_terms):
            inputs = LossInputs(
                x=x, reference=x if reference is None else reference, x_t=ps.x_t, t=t, prediction=u,
                x0_hat=self.path.data_estimate(x_t=ps.x_t, t=t, u=u), z=z, extras={"features": features},
            )
            for name, term in self.loss_terms.items():
                losses[name] = term(inputs)
                total = total + self.loss_weights[name] * losses[name]
        losses["loss"] = total
        losses["t"] = t.detach()
        losses["fm_per_sample"] = fm_per_sample.detach()
        return losses
def encoder_shape_rule(encoder: nn.Module) -> ShapeRule:
    """The encoder's :class:`ShapeRule`: its ``shape_rule``, else isotropic from ``downsample_factor``."""
    rule = getattr(encoder, "shape_rule", None)
    if rule is None:
        if not hasattr(encoder, "downsample_factor"):
            raise TypeError(
                f"encoder {type(encoder).__name__} must define 'shape_rule' (a core.shapes.ShapeRule) or 'downsample_factor'"
            )
        rule = ShapeRule.isotropic(int(encoder.downsample_factor), int(encoder.spatial_dims))
    if not isinstance(rule, ShapeRule) or rule.dims != int(encoder.spatial_dims):
        raise TypeError(
            f"encoder {type(encoder).__name__}.shape_rule must be a core.shapes.ShapeRule with one factor per spatial dim "
            f"({encoder.spatial_dims}), got {rule!r}"
        )
    return rule
