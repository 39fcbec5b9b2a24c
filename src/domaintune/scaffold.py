"""`domaintune new-plugin <name>`: a working domain plugin folder, sample data and task config;
`domaintune init <folder>`: a project around one, for an installed domaintune."""

from __future__ import annotations

import json
import random
import re
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
    """Text classification implements the datamodule contract (domaintune.api.TaskDataModule);
    a data kind of its own subclasses TaskDataModule and implements its abstract methods."""

    # Replace the sample with your data, or pass data.path=<file or folder> on the command line.
    default_path = Path(__file__).parent / "data" / "examples.jsonl"
'''

TASK = """# @package _global_
# {title}: `domaintune train task={name}` (written by `domaintune new-plugin`).
task_name: {name}
optimized_metric: val/acc   # mode follows it (accuracy: higher is better)
data:
  _target_: plugins.{name}.{cls}
  max_length: 128
trainer:
  max_epochs: 5
"""

SAMPLE = {  # distinct sentences: templated rows would be near duplicates, which training removes
    "question": [
        "How do I update the address on my {topic} account?",
        "Can you explain how {topic} renewals work each year?",
        "What documents do I need before opening a {topic} case?",
        "Is it possible to cancel my {topic} plan online?",
        "Where can I see the status of my {topic} request?",
        "Who should I contact about a {topic} question after hours?",
        "Does the {topic} service cover people living abroad?",
        "When will the new {topic} prices take effect?",
        "Could someone tell me which {topic} option suits a small business?",
        "How long does a {topic} claim usually take to review?",
        "Is there a mobile app for managing {topic} appointments?",
        "What happens to my {topic} data if I close the account?",
        "Can I add a second person to my {topic} contract?",
        "Which payment methods do you accept for {topic} fees?",
        "Do you offer a trial period for {topic} before I commit?",
        "How can I download last year's {topic} statements?",
        "Are weekend visits possible for {topic} inspections?",
        "What is the difference between the basic and premium {topic} tiers?",
        "Can my {topic} membership be paused while I travel?",
        "Is a reference number required when I phone about {topic}?",
        "How do I reset the password for the {topic} portal?",
        "Will my {topic} discount carry over after moving house?",
        "Which forms must be signed to transfer a {topic} policy?",
        "Can you remind me what the {topic} deadline is this quarter?",
    ],
    "complaint": [
        "I'm unhappy: my {topic} case was handled badly.",
        "Nobody has answered my {topic} emails for three weeks.",
        "The {topic} process is far too slow and confusing.",
        "I was charged twice for the same {topic} invoice.",
        "Your agent hung up on me while I was explaining the {topic} problem.",
        "The {topic} portal keeps logging me out mid-form.",
        "My {topic} appointment was cancelled without any warning.",
        "I received someone else's {topic} letter in the post.",
        "Three different people gave me three different {topic} answers.",
        "The promised {topic} refund never arrived.",
        "Waiting ninety minutes on hold about {topic} is unacceptable.",
        "You raised my {topic} fee without telling me.",
        "The technician left before finishing the {topic} work.",
        "My complaint about {topic} was closed without a reply.",
        "Every month the {topic} bill shows a charge I never agreed to.",
        "The {topic} website lost all the details I typed in.",
        "I asked for a callback about {topic} twice and got none.",
        "Your {topic} form rejects my valid postcode.",
        "The {topic} staff at the branch were rude to my mother.",
        "I cancelled {topic} in March and you still take money.",
        "Nothing in the {topic} contract matches what sales promised.",
        "My {topic} documents were sent to an old address again.",
        "The chat bot cannot handle a simple {topic} question.",
        "Repairs under my {topic} cover have been delayed for months.",
    ],
    "praise": [
        "Thanks, my {topic} request was sorted out quickly!",
        "Great service with my {topic} renewal this year.",
        "The team made the {topic} paperwork easy, thank you.",
        "Really impressed by how you handled my {topic} claim.",
        "Maria on the {topic} line was patient and clear.",
        "The new {topic} app is simple and fast, well done.",
        "I got my {topic} refund within two days, brilliant.",
        "Lovely experience at the {topic} office this morning.",
        "Your {topic} guide answered every question I had.",
        "Five stars for the friendly {topic} support crew.",
        "Switching my {topic} plan took under five minutes.",
        "The engineer fixed the {topic} fault on the first visit.",
        "Thank you for waiving the late {topic} fee so kindly.",
        "Clear letters and fair {topic} prices, I'm staying.",
        "The {topic} advisor followed up exactly when she said she would.",
        "Setting up {topic} online was a pleasure.",
        "Quick, polite and helpful: best {topic} call I've had.",
        "I appreciate the reminder before my {topic} deadline.",
        "Your {topic} team went beyond what I expected.",
        "Booking a {topic} slot on the website was effortless.",
        "Everything about the {topic} onboarding felt well organised.",
        "Many thanks for explaining the {topic} options so plainly.",
        "The weekend {topic} hotline saved my holiday.",
        "Honest advice on {topic} that saved me money, thanks.",
    ],
}


PROJECT_README = """# {title}

A domaintune project (written by `domaintune init`). `conf/` and `plugins/` here extend the
configs and plugins that come with domaintune; a file here of the same name as one of ours wins.

```bash
domaintune train task={name}                          # fine-tune on plugins/{name}/data/examples.jsonl
domaintune train task={name} data.path=my_data.csv    # or on your own data (text and label columns)
domaintune predict run=outputs/runs/<date>/<time>_{name} text="Where is my parcel?"
domaintune train -m task={name} sweep=optuna hydra.sweeper.n_trials=8   # search learning rate and epochs
domaintune plugins                                    # what is registered, and from where
```

Runs, sweeps and their metrics go to `outputs/`; Weights & Biases runs are offline until
`wandb sync`.
"""

GITIGNORE = """outputs/
wandb/
__pycache__/
"""


def class_name(name: str) -> str:
    return "".join(part.title() for part in name.split("_")) + "DataModule"


def sample_rows(name: str) -> list[dict]:
    """A small, learnable sample in the new domain's words, so `train task=<name>` runs at once."""
    topic = name.replace("_", " ")
    rows = [{"text": text.format(topic=topic), "label": label} for label, texts in SAMPLE.items() for text in texts]
    random.Random(0).shuffle(rows)
    return rows


def write_plugin(name: str, project: str | Path = ".") -> list[Path]:
    """Write plugins/<name>/ and conf/task/<name>.yaml under `project`; nothing existing is overwritten."""
    if not registry.NAME_PATTERN.match(name):
        raise UserError(f"plugin name '{name}': use lower-case letters, digits and '_', starting with a letter")
    if name in registry.names("datamodule"):
        raise UserError(
            f"a datamodule plugin named '{name}' exists already ({registry.get('datamodule', name).source})"
        )
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


def write_project(folder: str | Path, name: str | None = None) -> tuple[str, list[Path]]:
    """A new project folder: a domain plugin with sample data, its task config, .gitignore and a
    README. The task is named after the folder unless `name` is given; returns it and the files."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} exists and is not empty; pick a new folder name")
    name = name or re.sub(r"[^a-z0-9_]", "_", folder.resolve().name.lower()).strip("_")
    if not registry.NAME_PATTERN.match(name):
        raise UserError(f"cannot name a task after folder '{folder.name}'; give one with --task <name>")
    written = write_plugin(name, folder)  # checks the name before it writes anything
    title = name.replace("_", " ").capitalize()
    for path, text in {
        folder / "README.md": PROJECT_README.format(name=name, title=title),
        folder / ".gitignore": GITIGNORE,
    }.items():
        path.write_text(text)
        written.append(path)
    return name, written
