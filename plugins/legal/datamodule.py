"""Legal text classification with the example data we wrote for it as the default."""

from pathlib import Path

from domaintune.data.text_classification import TextClassificationDataModule


class LegalDataModule(TextClassificationDataModule):
    default_path = Path(__file__).parent / "data" / "examples.jsonl"
