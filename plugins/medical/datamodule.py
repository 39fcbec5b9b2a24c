"""Medical entity recognition, with the example sentences we wrote for it as the default data."""

from pathlib import Path

from domaintune.data.token_classification import TokenClassificationDataModule


class MedicalDataModule(TokenClassificationDataModule):
    default_path = Path(__file__).parent / "data" / "sentences.jsonl"
