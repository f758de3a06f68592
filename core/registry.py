"""Typed registries of named factories (timm/torchvision style).

Every swappable component (encoders, decoders, latent regularizers, auxiliary loss terms, time
samplers, modalities) is registered under a name. Configs and checkpoints store registry names plus
keyword arguments, never dotted import paths, so files keep working when code moves.

Third-party modality plugins register through the entry-point group ``difftok.modalities``: the
entry point's object is a callable (or module) that performs the registrations when loaded. Loading
is lazy (first lookup) and can be disabled with ``DIFFTOK_PLUGIN_AUTOLOAD=0``.
"""

from __future__ import annotations

import fnmatch
import inspect
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

__all__ = [
    "Registry",
    "RegistryEntry",
    "DuplicateRegistrationError",
    "ENCODERS",
    "DECODERS",
    "REGULARIZERS",
    "LOSS_TERMS",
    "TIME_SAMPLERS",
    "MODALITIES",
    "GENERATORS",
    "REGISTRIES",
    "create",
    "list_models",
    "load_plugins",
    "PLUGIN_GROUP",
]

T = TypeVar("T")
PLUGIN_GROUP = "difftok.modalities"
BUILTIN_PLUGIN_PREFIX = "modalities."  # difftok's own plugins, registered through the same group


class DuplicateRegistrationError(ValueError):
    """Raised when two definitions claim the same name in one registry."""


@dataclass(frozen=True)
class RegistryEntry:
    """One registered factory and where it was defined."""

    name: str
    factory: Callable[..., Any]
    origin: str  # "module:qualname (file:line)" of the defining object


def _origin_of(obj: Any) -> str:
    module = getattr(obj, "__module__", "?")
    qualname = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    try:
        where = f" ({inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]})"
    except (TypeError, OSError):
        where = ""
    return f"{module}:{qualname}{where}"


class Registry(Generic[T]):
    """A name -> factory map for one kind of component.

    Args:
        kind: what this registry holds (used in error messages), e.g. ``"encoder"``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, RegistryEntry] = {}

    def register(self, name: str | None = None, *, override: bool = False) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a factory under ``name`` (default: the function's name).

        Raises:
            DuplicateRegistrationError: if the name is taken and ``override`` is False; the message
                names both definitions.
        """

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name or factory.__name__, factory, override=override)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., T], *, override: bool = False) -> None:
        """Register ``factory`` under ``name`` (non-decorator form)."""
        new_origin = _origin_of(factory)
        old = self._entries.get(name)
        if old is not None and not override and old.factory is not factory:
            raise DuplicateRegistrationError(
                f"{self.kind} '{name}' is already registered by {old.origin}; "
                f"second definition: {new_origin}. Rename one of them or pass override=True."
            )
        self._entries[name] = RegistryEntry(name=name, factory=factory, origin=new_origin)

    def remove(self, name: str) -> None:
        """Unregister ``name`` (used by tests and by plugins that replace a built-in)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``."""
        _ensure_plugins_loaded()
        try:
            return self._entries[name].factory
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            hint = ""
            if self.kind == "modality":
                hint = " (plugins register through the 'difftok.modalities' entry points: is difftok installed, e.g. pip install -e .?)"
            raise KeyError(f"unknown {self.kind} '{name}'. Registered {self.kind}s: {known}{hint}") from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build ``name`` with keyword overrides; ``None`` values are dropped so defaults apply."""
        return self.get(name)(**{k: v for k, v in kwargs.items() if v is not None})

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching an fnmatch ``pattern``."""
        _ensure_plugins_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        _ensure_plugins_loaded()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


ENCODERS: Registry[Any] = Registry("encoder")
DECODERS: Registry[Any] = Registry("decoder")
REGULARIZERS: Registry[Any] = Registry("regularizer")
LOSS_TERMS: Registry[Any] = Registry("loss term")
TIME_SAMPLERS: Registry[Any] = Registry("time sampler")
MODALITIES: Registry[Any] = Registry("modality")
GENERATORS: Registry[Any] = Registry("generator")  # latent generators (e.g. DiT), not part of the autoencoder

REGISTRIES: dict[str, Registry[Any]] = {
    "encoder": ENCODERS,
    "decoder": DECODERS,
    "regularizer": REGULARIZERS,
    "loss_term": LOSS_TERMS,
    "time_sampler": TIME_SAMPLERS,
    "modality": MODALITIES,
    "generator": GENERATORS,
}


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Build a registered component: ``create("encoder", "conv_encoder", spatial_dims=2)``."""
    if kind not in REGISTRIES:
        raise KeyError(f"unknown registry kind '{kind}'; kinds: {', '.join(REGISTRIES)}")
    return REGISTRIES[kind].create(name, **kwargs)


def list_models(kind: str | None = None, pattern: str = "*") -> list[str] | dict[str, list[str]]:
    """Registered names of one kind, or of every kind as a dict when ``kind`` is None."""
    if kind is None:
        return {k: r.list(pattern) for k, r in REGISTRIES.items()}
    if kind not in REGISTRIES:
        raise KeyError(f"unknown registry kind '{kind}'; kinds: {', '.join(REGISTRIES)}")
    return REGISTRIES[kind].list(pattern)


_plugins_state = {"loaded": False, "loading": False}


def load_plugins(*, force: bool = False) -> list[str]:
    """Load every plugin registered under the ``difftok.modalities`` entry-point group.

    difftok's built-in modalities are announced through the same group in its own
    ``pyproject.toml``, so core never imports them directly. With ``DIFFTOK_PLUGIN_AUTOLOAD=0``
    only the built-in ones load. A plugin that fails to import is reported with a warning and
    skipped.

    Returns:
        Names of the entry points that loaded.
    """
    if (_plugins_state["loaded"] and not force) or _plugins_state["loading"]:
        return []
    _plugins_state["loading"] = True
    loaded: list[str] = []
    try:
        builtin_only = os.environ.get("DIFFTOK_PLUGIN_AUTOLOAD", "1") == "0"
        for ep in entry_points(group=PLUGIN_GROUP):
            if builtin_only and not ep.value.startswith(BUILTIN_PLUGIN_PREFIX):
                continue
            try:
                obj = ep.load()
                if callable(obj) and not inspect.ismodule(obj):
                    obj()
                loaded.append(ep.name)
            except DuplicateRegistrationError:
                raise
            except Exception as err:  # a broken third-party plugin must not break core
                warnings.warn(f"difftok plugin '{ep.name}' ({ep.value}) failed to load: {err!r}", stacklevel=2)
        _plugins_state["loaded"] = True
    finally:
        _plugins_state["loading"] = False
    return loaded


def _ensure_plugins_loaded() -> None:
    if not _plugins_state["loaded"]:
        load_plugins()
