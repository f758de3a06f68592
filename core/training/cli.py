"""Recipe command line: Hydra ``key=value`` overrides on ConfigStore-only structured configs.

A recipe module builds an :class:`ExperimentConfig` and calls :func:`run_recipe`::

    python -m recipes.image.quickstart trainer.max_steps=100 data.batch_size=8

No YAML files are involved. Each run's resolved config is saved to ``<output_dir>/config.yaml``
once the run is accepted (Hydra itself writes nothing into the run folder: no ``.hydra/``, logs go to
stdout); ``--cfg job`` prints it without training. In a multirun sweep (``-m``) every job trains in
its own folder, ``<output_dir>/multirun/<job number>``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hydra
from hydra import compose, initialize
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from core.training.output_folder import own_output_folder

from core.training.run import train

__all__ = ["Recipe", "register_recipe", "compose_recipe", "run_recipe"]


@dataclass(frozen=True)
class Recipe:
    """A named experiment: a config builder, an optional check before training and an optional step after.

    ``train_fn`` is what trains the composed config: :func:`core.training.run.train` (tokenizers,
    the default) or e.g. :func:`core.training.generator_run.train_generator` (latent generators).
    """

    name: str
    build_config: Callable[[], Any]  # -> ExperimentConfig (or another structured config for train_fn)
    after_train: Callable[[Any, Any], Any] | None = None  # (cfg, TrainResult) -> anything
    check: Callable[[Any], None] | None = None  # (composed cfg) -> None; raises to refuse the run early
    train_fn: Callable[[Any], Any] | None = None  # (composed cfg) -> TrainResult; default core.training.run.train


def register_recipe(recipe: Recipe) -> Recipe:
    """Store the recipe's config in Hydra's ConfigStore under ``recipe.name``."""
    ConfigStore.instance().store(name=recipe.name, node=recipe.build_config())
    return recipe


def compose_recipe(recipe: Recipe, overrides: list[str] | None = None) -> DictConfig:
    """Compose the recipe's config with overrides (Hydra compose API; used by tests)."""
    register_recipe(recipe)
    with initialize(version_base="1.3", config_path=None):
        return compose(config_name=recipe.name, overrides=overrides or [])


def run_recipe(recipe: Recipe, argv: list[str] | None = None) -> None:
    """Run ``recipe`` as a Hydra application; outputs go to the config's ``output_dir``."""
    register_recipe(recipe)
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append("hydra.run.dir=${output_dir}")
    if not any(a.startswith("hydra.job.name=") for a in args):
        args.append(f"hydra.job.name={recipe.name}")
    if not any(a.startswith("hydra.sweep.dir=") for a in args):
        args.append("hydra.sweep.dir=${output_dir}/multirun")
    if not any(a.startswith("hydra.output_subdir=") for a in args):
        args.append("hydra.output_subdir=null")  # config.yaml is written by the run, after it is accepted
    if not any(a.startswith(("hydra/job_logging=", "override hydra/job_logging=")) for a in args):
        args.append("hydra/job_logging=stdout")  # no log file in the run folder before the run is accepted

    @hydra.main(version_base="1.3", config_path=None, config_name=recipe.name)
    def _main(cfg: DictConfig) -> None:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            cfg.output_dir = HydraConfig.get().runtime.output_dir  # each sweep job in its own folder
        if recipe.check is not None:
            recipe.check(cfg)
        with own_output_folder(cfg.output_dir):  # held through the report as well
            result = (recipe.train_fn or train)(cfg)
            if recipe.after_train is not None and getattr(result, "is_global_zero", True):
                recipe.after_train(cfg, result)  # rank 0 only: the other DDP processes wrote nothing to report

    saved = sys.argv
    sys.argv = [saved[0], *args]
    try:
        _main()
    finally:
        sys.argv = saved
