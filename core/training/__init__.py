"""Training stack: structured configs, the thin LightningModule, callbacks and ``train(cfg)``."""
