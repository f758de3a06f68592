"""DiT (Peebles & Xie 2023) with adaLN-Zero, generic over 1-D/2-D/3-D latents: the latent generator.

``DiT(x (B, C, *S), t (B,), y (B,)) -> (B, out_channels, *S)``. Patchify with a conv (kernel = stride
= patch), add a fixed sin-cos position embedding, run ``depth`` adaLN-Zero blocks conditioned on
``c = t_emb(t) + y_emb(y)``, then a modulated final LayerNorm + Linear and unpatchify. ``t`` is
the network time as given (DiTo feeds ``1000·t``); ``y = num_classes`` is the null class (label
dropping for classifier-free guidance is the caller's job).

Position embedding: the embedding of the configured ``input_size`` grid is stored as the frozen
parameter ``pos_embed`` (1, N, D), as in DiT, so DiT-format state dicts load and the parameter
count matches DiT's. Inputs with another grid (e.g. 16×24 latents) get the same formula evaluated
on the fly for that grid (nothing is cached or stored). Init follows DiT exactly; see
:meth:`DiT.initialize_weights`. Generator factories ``dit_{s,b,l,xl}_{2,4,8}`` and ``dit_tiny_2``
are registered in ``GENERATORS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from core.nets.dit_blocks import DiTBlock, FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder
from core.nets.layers import check_spatial_dims
from core.nets.pos_embed import sincos_pos_embed
from core.registry import GENERATORS

__all__ = ["DiT", "DiTSize", "DIT_SIZES", "DIT_PATCH_SIZES"]


class DiT(nn.Module):
    """Class-conditional diffusion transformer with adaLN-Zero.

    Args:
        spatial_dims: 1, 2 or 3 (layout ``(B, C, *S)``).
        in_channels: latent channels.
        out_channels: predicted channels (default ``in_channels``; DiTo's learn_sigma=False).
        input_size: the training latent grid (int: same on every axis); sets the stored ``pos_embed``.
        patch_size: patch edge along every spatial axis.
        hidden_size: transformer width.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / ``hidden_size``.
        num_classes: real classes; the embedding has ``num_classes + 1`` rows, the last being null.
        grad_checkpointing: recompute each block in backward (saves activation memory).
    """

    def __init__(
        self,
        *,
        spatial_dims: int = 2,
        in_channels: int = 4,
        out_channels: int | None = None,
        input_size: int | Sequence[int] = 32,
        patch_size: int = 2,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.spatial_dims, self.in_channels, self.patch_size = spatial_dims, in_channels, patch_size
        self.out_channels = in_channels if out_channels is None else out_channels
        self.hidden_size, self.num_classes, self.null_class = hidden_size, num_classes, num_classes
        self.grad_checkpointing = grad_checkpointing
        self.input_size = _grid_tuple(input_size, spatial_dims)
        self.base_grid = self.token_grid(self.input_size)

        self.x_embedder = PatchEmbed(spatial_dims, in_channels, hidden_size, patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        pos = sincos_pos_embed(hidden_size, self.base_grid)[None]  # (1, N, D)
        self.pos_embed = nn.Parameter(pos, requires_grad=False)  # fixed; a parameter as in DiT (state-dict and count compatible)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size**spatial_dims, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: xavier-uniform Linear weights with zero bias; the patch conv as a Linear on its
        flattened ``(D, C·p^d)`` view; label table N(0, 0.02); timestep MLP weights N(0, 0.02);
        every adaLN modulation linear and the final linear zero (so the output is 0 at init)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        conv = self.x_embedder.proj
        nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
        nn.init.zeros_(conv.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for linear in [b.adaLN_modulation[-1] for b in self.blocks] + [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def token_grid(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """Tokens per axis for a latent of spatial size ``spatial``.

        Raises:
            ValueError: a size is not a multiple of ``patch_size``.
        """
        if any(s % self.patch_size for s in spatial):
            raise ValueError(
                f"latent spatial size {tuple(spatial)} is not divisible by patch_size {self.patch_size}: "
                f"pad or crop the latents to a multiple of {self.patch_size}, or use a smaller patch size"
            )
        return tuple(s // self.patch_size for s in spatial)

    def position_embedding(self, grid: Sequence[int], device: torch.device) -> Tensor:
        """``(1, N, D)`` embedding of a token grid: the stored one for the configured grid, else computed now."""
        if tuple(grid) == self.base_grid:
            return self.pos_embed
        return sincos_pos_embed(self.hidden_size, grid, device=device)[None].to(self.pos_embed.dtype)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """x (B, C, *S) latents, t (B,) network time (already scaled, e.g. 1000·t), y (B,) long labels in
        [0, num_classes] (num_classes = null) -> (B, out_channels, *S)."""
        self._check_inputs(x, t, y)
        grid = self.token_grid(x.shape[2:])
        tokens = self.x_embedder(x) + self.position_embedding(grid, x.device)  # (B, N, D)
        c = self.t_embedder(t) + self.y_embedder(y)  # (B, D)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, c, use_reentrant=False)
            else:
                tokens = block(tokens, c)
        return self.unpatchify(self.final_layer(tokens, c), grid)  # (B, out, *S)

    def unpatchify(self, tokens: Tensor, grid: Sequence[int]) -> Tensor:
        """``(B, N, p^d·C)`` -> ``(B, C, *(g·p))``; each token's features are ordered (p_0, ..., p_{d-1}, C), as in DiT."""
        b, d, p = tokens.shape[0], self.spatial_dims, self.patch_size
        x = tokens.reshape(b, *grid, *([p] * d), self.out_channels)  # (B, g_0..g_{d-1}, p_0..p_{d-1}, C)
        order = [0, 2 * d + 1] + [i for axis in range(d) for i in (1 + axis, 1 + d + axis)]  # B, C, g_0, p_0, g_1, p_1, ...
        return x.permute(*order).reshape(b, self.out_channels, *(g * p for g in grid))

    def _check_inputs(self, x: Tensor, t: Tensor, y: Tensor) -> None:
        if x.ndim != 2 + self.spatial_dims or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must be (B, {self.in_channels}, *S) with {self.spatial_dims} spatial dims, got shape {tuple(x.shape)}; "
                f"build the DiT with matching spatial_dims/in_channels"
            )
        batch = x.shape[0]
        if t.shape != (batch,):
            raise ValueError(f"t must be (B,) = ({batch},), got shape {tuple(t.shape)}; expand a scalar time with t.expand(B)")
        if y.shape != (batch,) or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"y must be ({batch},) integer labels, got shape {tuple(y.shape)} dtype {y.dtype}")
        if y.is_meta or torch.compiler.is_compiling():
            return
        if bool(((y < 0) | (y > self.num_classes)).any()):  # one device sync; an out-of-range index would otherwise be a device assert
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = null class), got min {int(y.min())} max {int(y.max())}"
            )


def _grid_tuple(size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    grid = (size,) * spatial_dims if isinstance(size, int) else tuple(size)
    if len(grid) != spatial_dims:
        raise ValueError(f"input_size {size} has {len(grid)} entries but spatial_dims is {spatial_dims}")
    return grid


@dataclass(frozen=True)
class DiTSize:
    """Transformer shape of a named DiT size."""

    depth: int
    hidden_size: int
    num_heads: int


DIT_SIZES: dict[str, DiTSize] = {
    "s": DiTSize(depth=12, hidden_size=384, num_heads=6),
    "b": DiTSize(depth=12, hidden_size=768, num_heads=12),
    "l": DiTSize(depth=24, hidden_size=1024, num_heads=16),
    "xl": DiTSize(depth=28, hidden_size=1152, num_heads=16),
    "tiny": DiTSize(depth=2, hidden_size=48, num_heads=2),  # tests/CPU; 48 = 2·3·8 gives even sin-cos chunks in 1-D/2-D/3-D
}
DIT_PATCH_SIZES: dict[str, tuple[int, ...]] = {"s": (2, 4, 8), "b": (2, 4, 8), "l": (2, 4, 8), "xl": (2, 4, 8), "tiny": (2,)}


def _register(size_name: str, patch_size: int) -> None:
    size = DIT_SIZES[size_name]
    name = f"dit_{size_name}_{patch_size}"

    def factory(**kwargs) -> DiT:
        return DiT(**{"depth": size.depth, "hidden_size": size.hidden_size, "num_heads": size.num_heads, "patch_size": patch_size, **kwargs})

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"DiT-{size_name.upper()}/{patch_size} ({size}); keyword arguments override any :class:`DiT` argument."
    GENERATORS.add(name, factory)


for _size_name, _patches in DIT_PATCH_SIZES.items():
    for _patch in _patches:
        _register(_size_name, _patch)
