"""Customer support: route a customer's message to its intent."""

from .datamodule import SupportDataModule

DATAMODULES = {"support": SupportDataModule}
