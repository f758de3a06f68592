"""Frozen networks that are not part of the trained model: perceptual / representation targets,
a distillation teacher, the tokenizer under a latent generator.

A frozen network's tensors are turned into *non-persistent buffers*: they move with ``.to()`` but
are not trainable parameters, are not seen by optimisers, EMA or gradient clipping, and never
appear in ``state_dict()`` (checkpoints, exports). Frozen modules also stay in eval mode when the
surrounding model is switched to ``train()`` (:class:`FrozenModule` by itself; a module frozen with
:func:`freeze_as_buffers` when its owner calls :func:`keep_frozen_in_eval`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["freeze_as_buffers", "FrozenModule", "frozen_buffer_names", "keep_frozen_in_eval"]

FROZEN_MARK = "is_frozen_network"  # class-level/instance flag; marks a frozen subtree root


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter and buffer of ``module`` (recursively) into a non-persistent buffer.

    Values are kept (detached, ``requires_grad=False``); the module is put in eval mode and marked
    frozen (see :func:`frozen_buffer_names`). Returns ``module`` for chaining.
    """
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, param.detach().requires_grad_(False), persistent=False)
        for name, buf in list(sub.named_buffers(recurse=False)):
            delattr(sub, name)
            sub.register_buffer(name, buf, persistent=False)
    setattr(module, FROZEN_MARK, True)
    return module.eval()


class FrozenModule(nn.Module):
    """Wrap ``net`` as a frozen network: no parameters, no state-dict entries, always in eval mode.

    Calls are forwarded to ``net``; gradients still flow through it into its *inputs*.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = freeze_as_buffers(net)
        setattr(self, FROZEN_MARK, True)

    def train(self, mode: bool = True) -> "FrozenModule":
        # a frozen target network must never switch dropout/batch-norm statistics on
        return super().train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)


def frozen_buffer_names(model: nn.Module) -> list[str]:
    """Fully qualified names of the buffers inside frozen subtrees of ``model``.

    Used to tell data-parallel wrappers (DDP) not to broadcast these large constant tensors.
    """
    names: list[str] = []
    for prefix, sub in model.named_modules():
        if getattr(sub, FROZEN_MARK, False):
            names.extend(f"{prefix}.{n}" if prefix else n for n, _ in sub.named_buffers())
    return sorted(set(names))


def keep_frozen_in_eval(model: nn.Module) -> None:
    """Put every frozen subtree of ``model`` back in eval mode; call it after ``model.train(mode)``.

    ``nn.Module.train`` recurses into every child, so a frozen network without its own ``train``
    override would otherwise switch dropout or batch-norm statistics on.
    """
    for sub in model.modules():
        if getattr(sub, FROZEN_MARK, False):
            sub.eval()
