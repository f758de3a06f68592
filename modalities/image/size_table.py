"""Decoder size tables as overridable config: one registered name per row, its kwargs in the config.

The size configs (:func:`~modalities.image.dito.dito_config`, :func:`~modalities.image.ssdd.config.ssdd_config`)
write their row's architecture kwargs into ``ComponentConfig.kwargs``, so every one of them can be
overridden from the command line without ``+`` (``model.decoder.kwargs.window=4``). The price is that
the name alone no longer picks the architecture once the kwargs are there; :func:`size_kwargs`
refuses the one silent mistake that allows (renaming the decoder but keeping another size's row).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["size_kwargs"]


def _comparable(row: Mapping[str, Any]) -> dict[str, Any]:
    # OmegaConf turns tuples into lists; compare values, not container types
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in row.items()}


def size_kwargs(family: str, size: str, rows: Mapping[str, Mapping[str, Any]], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Row ``size`` of ``rows`` with ``kwargs`` on top (the builder's arguments and any overrides).

    Args:
        family: registry prefix (``ssdd``, ``dito``), for the error message.
        size: the row the registered name stands for.
        rows: every size's architecture kwargs.
        kwargs: the decoder kwargs of the config plus the builder's.

    Raises:
        ValueError: ``kwargs`` hold another size's complete row, unchanged (the config was made
            for that size and only the decoder name was edited).
    """
    own = _comparable(rows[size])
    given = _comparable({k: kwargs[k] for k in own if k in kwargs})
    if len(given) == len(own) and given != own:
        same = [name for name, row in rows.items() if name != size and _comparable(row) == given]
        if same:
            raise ValueError(
                f"decoder '{family}_{size}' got the complete size-table kwargs of '{family}_{same[0]}' "
                f"({', '.join(sorted(given))}): the config was made for size '{same[0]}' and only its name was changed. "
                f"Build the config for size '{size}' (e.g. {family}_config('{size}')), or override the kwargs "
                f"themselves (model.decoder.kwargs.<name>=...) and keep the name '{family}_{same[0]}'"
            )
    return {**rows[size], **kwargs}
