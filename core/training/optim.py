"""Optimiser factory: AdamW (DiTo) and schedule-free RAdam (SSDD)."""

from __future__ import annotations

import fnmatch

import torch
from torch import nn

from core.training.config import OptimConfig

__all__ = ["build_optimizer", "parameter_groups", "is_schedule_free"]


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Split trainable parameters into decayed / non-decayed groups by ``no_decay_patterns``."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if any(fnmatch.fnmatch(name, pattern) for pattern in cfg.no_decay_patterns):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Build the optimiser named by ``cfg.name`` over ``model``'s trainable parameters."""
    groups = parameter_groups(model, cfg)
    betas = tuple(cfg.betas)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "radam_schedulefree":
        try:
            import schedulefree
        except ImportError as err:  # pragma: no cover - declared dependency
            raise ImportError("optim.name=radam_schedulefree needs the 'schedulefree' package: pip install schedulefree") from err
        return schedulefree.RAdamScheduleFree(groups, lr=cfg.lr, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer '{cfg.name}'; choose 'adamw' or 'radam_schedulefree'")


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """Schedule-free optimisers must be switched between ``train()`` and ``eval()`` modes."""
    return hasattr(optimizer, "train") and hasattr(optimizer, "eval") and "ScheduleFree" in type(optimizer).__name__
