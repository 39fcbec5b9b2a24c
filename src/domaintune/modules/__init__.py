"""Built-in LightningModule plugins."""
