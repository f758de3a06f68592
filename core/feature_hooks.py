"""Capture intermediate decoder outputs for loss terms during one forward call.

Loss terms that need decoder features (e.g. REPA) name a submodule through
:meth:`core.loss_terms.LossTerm.feature_module`. The caller wraps exactly one velocity call in
:func:`capture_features`; forward hooks live only inside the ``with`` block and write into a local
dict, so nothing is stored on the modules between calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

__all__ = ["requested_feature_modules", "capture_features"]


def requested_feature_modules(terms: Iterable[nn.Module], decoder: nn.Module) -> list[str]:
    """Distinct submodule names (of ``decoder``) that ``terms`` want features from, in order."""
    names: list[str] = []
    for term in terms:
        ask = getattr(term, "feature_module", None)
        name = ask(decoder) if callable(ask) else None
        if name is not None and name not in names:
            names.append(name)
    return names


@contextmanager
def capture_features(decoder: nn.Module, names: list[str]) -> Iterator[dict[str, Any]]:
    """Record the outputs of ``decoder.get_submodule(name)`` for each name while the block runs.

    Yields a dict ``{name: output}`` filled by the forward inside the block (the last call wins if a
    submodule runs more than once). The hooks are removed on exit, even after an exception.
    """
    features: dict[str, Any] = {}
    handles = []
    try:
        for name in names:
            try:
                module = decoder.get_submodule(name)
            except AttributeError as err:
                raise AttributeError(
                    f"a loss term asked for features of decoder submodule '{name}', which "
                    f"{type(decoder).__name__} does not have; fix the decoder's feature name or drop the term"
                ) from err
            handles.append(module.register_forward_hook(_recorder(features, name)))
        yield features
    finally:
        for handle in handles:
            handle.remove()


def _recorder(features: dict[str, Any], name: str):
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        features[name] = output

    return hook
