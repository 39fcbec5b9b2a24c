"""Medical: find the diseases, drugs and symptoms a clinical sentence mentions."""

from .datamodule import MedicalDataModule

DATAMODULES = {"medical": MedicalDataModule}
