"""`domaintune new-plugin <name>`: a working domain plugin folder, sample data and task config."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from domaintune import registry
from domaintune.errors import UserError

INIT = '''"""{title}: text classification plugin (written by `domaintune new-plugin`)."""

from .datamodule import {cls}

DATAMODULES = {{"{name}": {cls}}}
'''

DATAMODULE = '''"""{title} data: the shared text-classification pipeline with this domain's defaults."""

from pathlib import Path

from domaintune.data.text_classification import TextClassificationDataModule


class {cls}(TextClassificationDataModule):
    # Replace the sample with your data, or pass data.path=<file or folder> on the command line.
    default_path = Path(__file__).parent / "data" / "examples.jsonl"
'''

TASK = '''# @package _global_
# {title}: `domaintune train task={name}` (written by `domaintune new-plugin`).
task_name: {name}
optimized_metric: val/acc
mode: max
data:
  _target_: plugins.{name}.{cls}
  max_length: 128
trainer:
  max_epochs: 5
'''

SAMPLE = {
    "question": ["How do I {verb} my {topic} {thing}?", "Can you explain how the {topic} {thing} works?",
                 "What do I need to {verb} my {topic} {thing}?", "Is it possible to {verb} my {topic} {thing} online?"],
    "complaint": ["I'm unhappy: my {topic} {thing} was handled badly.", "Nobody answered about my {topic} {thing} for weeks.",
                  "The {topic} {thing} process is far too slow.", "I was charged twice for my {topic} {thing}."],
    "praise": ["Thanks, my {topic} {thing} was sorted out quickly!", "Great service with my {topic} {thing}.",
               "The team made my {topic} {thing} easy, thank you.", "Really impressed by how you handled my {topic} {thing}."],
}
SLOTS = {"verb": ["update", "renew", "cancel", "change"], "thing": ["account", "request", "plan", "order", "claim"]}


def class_name(name: str) -> str:
    return "".join(part.title() for part in name.split("_")) + "DataModule"


def sample_rows(name: str) -> list[dict]:
    """A small, learnable sample in the new domain's words, so `train task=<name>` runs at once."""
    topic = name.replace("_", " ")
    rows = [
        {"text": template.format(topic=topic, verb=verb, thing=thing), "label": label}
        for label, templates in SAMPLE.items()
        for template, verb, thing in itertools.product(templates, SLOTS["verb"], SLOTS["thing"])
    ]
    unique = list({row["text"]: row for row in rows}.values())
    random.Random(0).shuffle(unique)
    return unique


def write_plugin(name: str, project: str | Path = ".") -> list[Path]:
    """Write plugins/<name>/ and conf/task/<name>.yaml under `project`; nothing existing is overwritten."""
    if not registry.NAME_PATTERN.match(name):
        raise UserError(f"plugin name '{name}': use lower-case letters, digits and '_', starting with a letter")
    if name in registry.names("datamodule"):
        raise UserError(f"a datamodule plugin named '{name}' exists already ({registry.get('datamodule', name).source})")
    project = Path(project)
    folder, task = project / "plugins" / name, project / "conf" / "task" / f"{name}.yaml"
    for path in (folder, task):
        if path.exists():
            raise UserError(f"{path} exists already; pick another name or remove it")
    fields = {"name": name, "cls": class_name(name), "title": name.replace("_", " ").capitalize()}
    files = {
        folder / "__init__.py": INIT.format(**fields),
        folder / "datamodule.py": DATAMODULE.format(**fields),
        folder / "data" / "examples.jsonl": "".join(json.dumps(row) + "\n" for row in sample_rows(name)),
        task: TASK.format(**fields),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
