"""Support tickets that ask for one to three things at once (multi-label), with the example
tickets we wrote for it as the default data."""

from pathlib import Path

from domaintune.data.text_classification import TextClassificationDataModule


class SupportTicketsDataModule(TextClassificationDataModule):
    default_path = Path(__file__).parent / "data" / "tickets.jsonl"
