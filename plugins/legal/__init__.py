"""Legal: label a contract or terms-of-service clause by what it does."""

from .datamodule import LegalDataModule

DATAMODULES = {"legal": LegalDataModule}
