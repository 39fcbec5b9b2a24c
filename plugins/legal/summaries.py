"""Legal summaries: a contract clause in, a plain-English explanation out (example data we wrote)."""

from pathlib import Path

from domaintune.data.instruction import InstructionDataModule


class LegalSummariesDataModule(InstructionDataModule):
    default_path = Path(__file__).parent / "data" / "summaries.jsonl"
