"""``DiffusersVAE``: a difftok tokenizer behind diffusers' ``AutoencoderKL`` interface.

Duck-typed: diffusers is never imported, so it stays an optional dependency. Pipelines use a VAE
through a handful of calls, all provided here:

- ``vae.encode(x).latent_dist.sample(generator)`` / ``.mode()`` (``retrieve_latents``);
- ``vae.decode(z, return_dict=False, generator=g)[0]`` or ``vae.decode(z).sample``;
- ``vae.config.scaling_factor`` / ``shift_factor`` (latent normalisation), ``block_out_channels``
  (``vae_scale_factor = 2 ** (len(block_out_channels) - 1)``), ``latent_channels``, ``force_upcast``;
- ``vae.dtype``, ``vae.device``, ``enable_slicing()``, ``enable_tiling()`` (:mod:`core.tiling`).

Normalisation: diffusers computes generator latents as ``(z - shift_factor) * scaling_factor``
(FLUX/SD3; SD and DiT pipelines use ``z * scaling_factor`` and ignore the shift). With
``scaling_factor = 1 / scale`` and ``shift_factor = shift`` this is the tokenizer's
``normalize_latents``. Decoding is a flow ODE solve: ``num_inference_steps`` picks the step count
(1 for a distilled single-step decoder) and ``generator`` seeds its initial noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from core.autoencoder import DiffusionAutoencoder
from core.input_checks import check_float_tensor, resolve_num_steps
from core.latent.distribution import DecoderOutput, EncoderOutput, LatentDist
from core.tiling import TileSpec, resolve_tiles

__all__ = ["DiffusersVAE", "DiffusersVAEConfig"]

Generators = torch.Generator | Sequence[torch.Generator] | None


class DiffusersVAEConfig(dict):
    """A read-only mapping with attribute access, like diffusers' ``FrozenDict`` config.

    Missing attributes raise ``AttributeError`` so ``getattr(vae.config, "latents_mean", None)``
    and ``hasattr`` checks in pipelines behave as with a real diffusers config.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"DiffusersVAE config has no '{name}'; available: {', '.join(sorted(self))}") from None

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("DiffusersVAE.config is read-only: change the tokenizer (e.g. tok.latent_stats) instead")

    def __reduce__(self) -> tuple[Any, ...]:  # copy/pickle without going through the blocked __setitem__
        return (type(self), (dict(self),))

    __setattr__ = __setitem__ = __delattr__ = __delitem__ = update = pop = popitem = setdefault = clear = _read_only  # type: ignore[assignment]


def _log2_exact(factor: int) -> int:
    levels = factor.bit_length() - 1
    if factor < 1 or 2**levels != factor:
        raise ValueError(
            f"downsample factor {factor} is not a power of two, so diffusers' vae_scale_factor "
            f"(2 ** (len(block_out_channels) - 1)) cannot express it; use a tokenizer with a power-of-two stride"
        )
    return levels


class DiffusersVAE(nn.Module):
    """Use a :class:`~core.autoencoder.DiffusionAutoencoder` where diffusers expects ``AutoencoderKL``.

    Args:
        tokenizer: any difftok tokenizer (1, 2 or 3 spatial dims).
        num_inference_steps: default decode steps; None uses the tokenizer's own (``tok.sampling``).
        sample_size: the data size the tokenizer was trained at, reported as ``config.sample_size``
            (diffusers' tiling reads it; nothing here does).

    Tensors follow the tokenizer: data ``(B, C, *S)`` in [-1, 1], latents ``(B, C_z, *S/f)`` in
    tokenizer space (pipelines apply ``scaling_factor`` / ``shift_factor`` themselves).
    """

    def __init__(self, tokenizer: DiffusionAutoencoder, num_inference_steps: int | None = None, *, sample_size: int | None = None) -> None:
        super().__init__()
        if num_inference_steps is not None:
            resolve_num_steps(num_inference_steps, tokenizer.sampling.num_steps, "num_inference_steps")
        if not tokenizer.shape_rule.is_isotropic:
            # diffusers pipelines size latents with one vae_scale_factor for every axis and know no causal axes
            raise ValueError(
                f"DiffusersVAE needs the same non-causal factor on every axis, but this tokenizer has "
                f"{tokenizer.shape_rule.describe()}: diffusers derives one vae_scale_factor for all axes; "
                f"use the tokenizer's own encode/decode and tok.latent_shape instead"
            )
        _log2_exact(tokenizer.downsample_factor)
        self.tokenizer = tokenizer
        self.num_inference_steps = num_inference_steps
        self.sample_size = sample_size
        self.use_slicing = False
        self.use_tiling = False  # read by some pipelines
        self.tiling: dict[str, TileSpec] = {}  # decode(tile=..., overlap=...) while use_tiling

    # ------------------------------------------------------------------------------- config
    @property
    def config(self) -> DiffusersVAEConfig:
        """diffusers-style config, rebuilt on each access so it follows ``tokenizer.latent_stats``."""
        tok, stats = self.tokenizer, self.tokenizer.latent_stats
        levels = _log2_exact(tok.downsample_factor)
        return DiffusersVAEConfig(
            scaling_factor=1.0 / stats.scale,
            shift_factor=stats.shift,
            latents_mean=None,  # scalar normalisation only (no per-channel Wan-style stats)
            latents_std=None,
            latent_channels=tok.latent_channels,
            in_channels=tok.in_channels,
            out_channels=tok.in_channels,
            # only the length matters: pipelines derive vae_scale_factor = 2 ** (len - 1) = downsample factor
            block_out_channels=tuple(tok.latent_channels for _ in range(levels + 1)),
            force_upcast=False,
            sample_size=self.sample_size,
            spatial_dims=tok.spatial_dims,
            downsample_factor=tok.downsample_factor,
            num_inference_steps=self.num_inference_steps or tok.sampling.num_steps,
        )

    @property
    def dtype(self) -> torch.dtype:
        return next(self.tokenizer.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.tokenizer.parameters()).device

    # ------------------------------------------------------------------------------- switches
    def enable_slicing(self) -> None:
        """Encode and decode one sample at a time (lower peak memory, same results)."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        self.use_slicing = False

    def enable_tiling(self, tile: TileSpec = 64, overlap: TileSpec = None) -> None:
        """Decode in latent tiles sharing one full-size noise (bounded memory; :mod:`core.tiling`).

        Args:
            tile: latent tile size (int, or one entry per latent axis, None = whole axis); the
                default 64 is diffusers' ``AutoencoderKL`` tile (512 px at f8).
            overlap: latent overlap, default ``tile // 4`` (diffusers' 0.25 overlap factor).
        """
        resolve_tiles(self.tokenizer, tile, overlap)  # bad arguments fail here, not at the first decode
        self.use_tiling, self.tiling = True, {"tile": tile, "overlap": overlap}

    def disable_tiling(self) -> None:
        self.use_tiling, self.tiling = False, {}

    # ------------------------------------------------------------------------------- API
    def encode(self, x: Tensor, return_dict: bool = True) -> EncoderOutput | tuple[LatentDist]:
        """Data ``(B, C, *S)`` in [-1, 1] -> ``.latent_dist`` with ``sample(generator)`` / ``mode()``."""
        check_float_tensor(x, "input")  # before the cast, which would turn 0..255 pixels into floats silently
        x = x.to(self.dtype)
        if self.use_slicing and x.shape[0] > 1:
            parts = [self.tokenizer.encode(x[i : i + 1]).latent_dist for i in range(x.shape[0])]
            std = None if parts[0].std is None else torch.cat([p.std for p in parts])  # type: ignore[misc]
            dist = LatentDist(mean=torch.cat([p.mean for p in parts]), std=std)
        else:
            dist = self.tokenizer.encode(x).latent_dist
        return EncoderOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(
        self, z: Tensor, return_dict: bool = True, generator: Generators = None, num_inference_steps: int | None = None
    ) -> DecoderOutput | tuple[Tensor]:
        """Latents ``(B, C_z, *S/f)`` (tokenizer space) -> ``.sample`` ``(B, C, *S)`` in about [-1, 1].

        Args:
            generator: seeds the decoder's initial noise; a list gives one generator per sample
                (as diffusers' ``randn_tensor``).
            num_inference_steps: ODE steps; default ``self.num_inference_steps``, then the tokenizer's.
        """
        tok = self.tokenizer
        check_float_tensor(z, "latents z")
        z = z.to(self.dtype)
        steps = resolve_num_steps(num_inference_steps, self.num_inference_steps or tok.sampling.num_steps, "num_inference_steps")
        shape = tok.data_shape(tuple(z.shape))
        noise = self._initial_noise(shape, generator, z)
        if self.use_slicing and z.shape[0] > 1:  # same noise as the batched call, so the same result
            sample = torch.cat([tok.decode(z[i : i + 1], steps, noise=noise[i : i + 1], **self.tiling).sample for i in range(z.shape[0])])
        else:
            sample = tok.decode(z, steps, noise=noise, **self.tiling).sample
        return DecoderOutput(sample=sample) if return_dict else (sample,)

    def forward(
        self, sample: Tensor, sample_posterior: bool = False, return_dict: bool = True, generator: torch.Generator | None = None
    ) -> DecoderOutput | tuple[Tensor]:
        """Encode then decode, like ``AutoencoderKL.forward`` (posterior mode unless ``sample_posterior``)."""
        dist = self.encode(sample).latent_dist  # type: ignore[union-attr]
        z = dist.sample(generator) if sample_posterior else dist.mode()
        return self.decode(z, return_dict=return_dict, generator=generator)

    @staticmethod
    def _initial_noise(shape: tuple[int, ...], generator: Generators, like: Tensor) -> Tensor:
        """``N(0, I)`` of ``shape`` on ``like``'s device, as diffusers' ``randn_tensor`` draws it.

        A single generator draws the batch exactly as the tokenizer's ``decode`` does; a list draws
        one sample per generator. A generator on another device (e.g. a CPU generator for a CUDA
        model) draws there and the noise is moved, so seeds give the same noise on every device.
        """
        if generator is None or isinstance(generator, torch.Generator):
            return torch.randn(shape, generator=generator, device=like.device if generator is None else generator.device,
                               dtype=like.dtype).to(like.device)
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}; pass one per sample or a single one")
        return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=like.dtype) for g in generator]).to(like.device)
