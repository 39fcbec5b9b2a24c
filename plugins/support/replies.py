"""Support replies: a customer's message in, the agent's reply out (example data we wrote)."""

from pathlib import Path

from domaintune.data.instruction import InstructionDataModule


class SupportRepliesDataModule(InstructionDataModule):
    default_path = Path(__file__).parent / "data" / "replies.jsonl"
