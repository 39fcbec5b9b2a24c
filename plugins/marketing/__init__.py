"""Marketing: classify a piece of marketing copy by campaign type."""

from .datamodule import MarketingDataModule

DATAMODULES = {"marketing": MarketingDataModule}
