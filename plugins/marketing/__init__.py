"""Marketing: classify a piece of marketing copy by campaign type."""

from .copy import MarketingCopyDataModule
from .datamodule import MarketingDataModule

DATAMODULES = {"marketing": MarketingDataModule, "marketing_copy": MarketingCopyDataModule}
