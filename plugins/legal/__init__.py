"""Legal: label a contract or terms-of-service clause by what it does."""

from .datamodule import LegalDataModule
from .summaries import LegalSummariesDataModule

DATAMODULES = {"legal": LegalDataModule, "legal_summaries": LegalSummariesDataModule}
