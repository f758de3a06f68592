"""Modality-agnostic data machinery: sample sources, subsets, skip-and-count, tar-shard writing,
webdataset streams and the generic map-style dataset / LightningDataModule.

A modality plugin supplies only what is about its data (how to open one sample, its transforms and
its typed options); see :class:`core.data.datamodule.DataSpec`.
"""
