"""Marketing: classify a piece of marketing copy by campaign type."""

from .datamodule import MarketingDataModule
from .copy import MarketingCopyDataModule

DATAMODULES = {"marketing": MarketingDataModule, "marketing_copy": MarketingCopyDataModule}
