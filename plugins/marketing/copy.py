"""Marketing copy: product facts and a channel in, ad copy out (example data we wrote)."""

from pathlib import Path

from domaintune.data.instruction import InstructionDataModule


class MarketingCopyDataModule(InstructionDataModule):
    default_path = Path(__file__).parent / "data" / "copy.jsonl"
