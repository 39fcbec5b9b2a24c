"""Entity recognition: the encoder with a token head (a word's tag read on its first sub-word),
trained fully or through a peft adapter; scored on entities with seqeval, against a linear probe
on the frozen encoder's token vectors, decoded into entities the same way."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from domaintune import kinds, precision, verdict
from domaintune.api import TaskModule
from domaintune.data.token_classification import IGNORED, TokenClassificationDataModule
from domaintune.data.tokens import OUTSIDE, entities
from domaintune.kinds import Kind, register_kind
from domaintune.models import Backbone
from domaintune.modules.probe import PROBE_C, Probe, best_probes, probe_scaling, softmax_regression
from domaintune.modules.shared import EncoderWithHead, gather_rows

log = logging.getLogger(__name__)
BASE_KIND = (
    "linear probe on the frozen base encoder's token vectors (logistic regression, C chosen on validation), "
    "decoded into entities as the fine-tuned model is"
)
BASE_IS = "the frozen encoder with a linear token head"
MODE = "seqeval, default mode (conlleval): I-X after O or another type begins an entity"
SCORES = ("f1", "precision", "recall", "token_acc")  # what validation and test log besides the loss


def counts(truth: list[list[str]], predicted: list[list[str]]) -> dict[str, np.ndarray]:
    """Per sentence: entities found exactly (type and span), predicted and true; words tagged right
    and words. The verdict resamples sentences over these."""
    rows = {key: np.zeros(len(truth)) for key in ("hits", "predicted", "true", "correct", "words")}
    for i, (gold, guess) in enumerate(zip(truth, predicted)):
        true_set, guess_set = set(entities(gold)), set(entities(guess))
        rows["hits"][i], rows["predicted"][i], rows["true"][i] = (
            len(true_set & guess_set),
            len(guess_set),
            len(true_set),
        )
        rows["correct"][i], rows["words"][i] = sum(a == b for a, b in zip(gold, guess)), len(gold)
    return rows


def entity_scores(truth: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (seqeval's definitions, computed on the counts) and
    token accuracy."""
    c = {k: v.sum() for k, v in counts(truth, predicted).items()}
    return {
        "f1": round(float(verdict.pooled_f1(c["hits"], c["predicted"], c["true"])), 6),
        "precision": round(float(c["hits"] / c["predicted"]) if c["predicted"] else 0.0, 6),
        "recall": round(float(c["hits"] / c["true"]) if c["true"] else 0.0, 6),
        "token_acc": round(float(c["correct"] / max(c["words"], 1)), 6),
    }


def scored(truth: list[list[str]], predicted: list[list[str]]) -> dict[str, verdict.Scored]:
    rows = counts(truth, predicted)
    return {
        "f1": verdict.Scored("pooled_f1", (rows["hits"], rows["predicted"], rows["true"])),
        "token_acc": verdict.Scored("token_mean", (rows["correct"], rows["words"])),
    }


class TokenClassificationModule(EncoderWithHead, TaskModule):
    """Fine-tunes `encoder` with a fresh token head; with `peft_config` only the adapter and head
    train. `head_init="probe"` starts the head from the probe (linear-probe-then-fine-tune)."""

    def __init__(
        self,
        backbone: Backbone,
        tags: list[str],
        peft_config=None,
        *,  # the rest from conf/module/token_classification.yaml, where their defaults are
        dropout: float,
        lr: float,
        head_lr: float,
        weight_decay: float,
        warmup_ratio: float,
        schedule: str,
        head_init: str,
        probe_metric: str,
        probe_tokens: int,
    ):
        super().__init__(backbone, peft_config)
        self.save_hyperparameters(ignore=["backbone", "peft_config"], logger=False)
        self.encoder = encoder = self.adapt(self.base_encoder(), peft_config)
        self.tags = list(tags)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.config.hidden_size, len(self.tags)))
        self.kept: dict[str, list[torch.Tensor]] = {}
        self.test_report: dict = {}

    def base_encoder(self):
        """A fresh copy of the base encoder without its pooler: a token head reads every position."""
        encoder = self.backbone.load_model()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
        return encoder

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, encoder=None) -> torch.Tensor:
        """Token vectors in float32, whatever `model.dtype` is: the head and the probe are float32."""
        return (encoder or self.encoder)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(input_ids, attention_mask))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the tagged positions (0 for a batch of sentences the tokenizer gave no
        sub-word, where the mean over none would be NaN)."""
        if not (labels != IGNORED).any():
            return logits.sum() * 0.0
        return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORED)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    # -- evaluation: each word's tag kept by (sentence, word), scored on whole sentences ------------------
    def _keep(self, key: str, batch: dict, predicted: torch.Tensor) -> None:
        """The tags predicted for the words each window decides, as rows of (sentence, word, tag),
        and a row (sentence, -1, 0) per window, so that a sentence with no word the model sees is
        still scored (all O)."""
        owned = batch["owned"] >= 0
        sentence = batch["sentence"].unsqueeze(1).expand_as(owned)[owned]
        seen = torch.stack(
            [batch["sentence"], torch.full_like(batch["sentence"], -1), torch.zeros_like(batch["sentence"])], 1
        )
        rows = torch.cat([seen, torch.stack([sentence, batch["owned"][owned], predicted], 1)])
        self.kept.setdefault(key, []).append(rows.cpu())

    def _sentences(self, key: str, gold: list[list[int]]) -> tuple[list[list[str]], list[list[str]]]:
        """True and predicted tags of every sentence the stage saw (all its rows, from every process);
        a word the model cannot see (no sub-word) is predicted O."""
        rows = gather_rows(self, self.kept.pop(key, [])).astype(int).reshape(-1, 3)
        predicted: dict[int, list[str]] = {}
        for sentence, word, tag in rows:
            tags = predicted.setdefault(sentence, [OUTSIDE] * len(gold[sentence]))
            if word >= 0:
                tags[word] = self.tags[tag]
        order = sorted(predicted)
        return [[self.tags[t] for t in gold[s]] for s in order], [predicted[s] for s in order]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = self.loss(logits, batch["labels"])
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(batch["labels"]), sync_dist=True)
        self._keep("val", batch, logits.argmax(-1)[batch["owned"] >= 0])

    def on_validation_epoch_end(self) -> None:
        truth, predicted = self._sentences("val", self.trainer.datamodule.gold("val"))
        values = entity_scores(truth, predicted)
        self.log_dict({f"val/{k}": values[k] for k in SCORES}, prog_bar=True)

    def on_test_start(self) -> None:
        if self.probe is None:  # head_init=random: the base model's opponent is fitted now, on the base encoder
            self._fit_probe()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        owned = batch["owned"] >= 0
        logits = self(batch["input_ids"], batch["attention_mask"])
        self.log("test/loss", self.loss(logits, batch["labels"]), on_epoch=True, batch_size=len(owned), sync_dist=True)
        with self._base_encoder() as base:
            base_logits = self.probe.logits(self.hidden(batch["input_ids"], batch["attention_mask"], base)[owned])
        self._keep("test", batch, logits.argmax(-1)[owned])
        self._keep("base", batch, base_logits.argmax(-1).to(owned.device))

    def on_test_epoch_end(self) -> None:
        from seqeval.metrics import classification_report

        gold = self.trainer.datamodule.gold("test")
        truth, tuned = self._sentences("test", gold)
        _, base = self._sentences("base", gold)
        values = entity_scores(truth, tuned)
        self.log_dict({f"test/{k}": values[k] for k in SCORES})
        self.scored, self.base_scored = scored(truth, tuned), scored(truth, base)
        compared = [verdict.compare_scored(name, self.scored[name], self.base_scored[name]) for name in self.scored]
        per_type = classification_report(truth, tuned, output_dict=True, zero_division=0)
        self.test_report = {
            "verdict": verdict.verdict(compared, BASE_KIND, BASE_IS),
            "metric_mode": MODE,
            "base_test": entity_scores(truth, base),
            "per_type": {
                kind: {
                    k.removesuffix("-score"): round(float(v), 4) if k != "support" else int(v) for k, v in row.items()
                }
                for kind, row in per_type.items()
                if "avg" not in kind
            },
        }

    # -- the base model's opponent ------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.hparams.head_init == "probe":
            self._fit_probe()

    def probe_settings(self, datamodule) -> tuple:
        """What the probe depends on besides the base model and the sentences (for its cache)."""
        return datamodule.max_length, datamodule.stride, self.hparams.probe_metric, self.hparams.probe_tokens

    @torch.no_grad()
    def token_features(self, loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The base encoder's vector of every first sub-word in `loader`, its tag id, and (where its
        window decides the word) its (sentence, word), else -1s."""
        was_training = self.training
        self.eval()
        feats, tags, where = [], [], []
        with self._base_encoder() as encoder, precision.autocast(self.compute_precision, self.device):
            for batch in loader:
                batch = self.transfer_batch_to_device(batch, self.device, 0)
                tagged = batch["labels"] != IGNORED
                feats.append(self.hidden(batch["input_ids"], batch["attention_mask"], encoder)[tagged].cpu())
                tags.append(batch["labels"][tagged].cpu())
                sentence = batch["sentence"].unsqueeze(1).expand_as(tagged)
                owned = batch["owned"][tagged]
                where.append(torch.stack([torch.where(owned >= 0, sentence[tagged], -1), owned], 1).cpu())
        self.train(was_training)
        return torch.cat(feats), torch.cat(tags), torch.cat(where)

    def fit_probe(self, datamodule) -> tuple[Probe, Probe]:
        """Logistic regression on (at most `probe_tokens`, a seeded sample of) train words' base
        vectors, standardized (so that it can start the head), one per C of the grid, each decoded
        into entities on validation and scored there by `probe_metric`."""
        x_train, y_train, _ = self.token_features(datamodule.train_dataloader())
        if len(y_train) > self.hparams.probe_tokens:
            keep = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))[
                : self.hparams.probe_tokens
            ]
            x_train, y_train = x_train[keep], y_train[keep]
        x_val, y_val, where = self.token_features(datamodule.val_dataloader())
        owned, gold = where[:, 0] >= 0, datamodule.gold("val")
        every = torch.tensor([[sentence, -1, 0] for sentence in range(len(gold))], dtype=torch.long).view(-1, 3)
        key = self.hparams.probe_metric.removeprefix("val/")
        sign = -1 if kinds.of_module(type(self)).metrics[key] == "min" else 1
        center, scale, scaled = probe_scaling(x_train, "standardized")
        candidates, grid = [], []
        for C in PROBE_C:
            weight, bias = softmax_regression(scaled, y_train, len(self.tags), C)
            probe = Probe("standardized", center, scale, weight, bias, C, {}, grid, kind=BASE_KIND)
            logits = probe.logits(x_val)
            self.kept["probe"] = [every, torch.cat([where[owned], logits[owned].argmax(-1, keepdim=True)], 1)]
            probe.scores = {
                **entity_scores(*self._sentences("probe", gold)),
                "loss": round(float(nn.functional.cross_entropy(logits, y_val)), 6),
            }
            grid.append({"C": C, f"val/{key}": probe.scores[key]})
            candidates.append(probe)
        return best_probes(candidates, key, sign)

    # -- results -----------------------------------------------------------------------------------
    def report(self) -> dict:
        return {**self.test_report, **self.baseline_report()}

    @torch.no_grad()
    def predict(self, texts: list, datamodule) -> list[dict]:
        """Per text (raw, or `Words`), its entities as transformers' token-classification pipeline
        gives them with aggregation_strategy="first" (a word's tag and score from its first sub-word,
        words of one entity grouped, the group's score their mean), `word` being the text itself;
        `predicted` holds each entity as [type, start, end] to compare with a file's own."""
        self.merge()
        self.eval()
        found: list[dict | None] = [None] * len(texts)
        for rows, sentences, batch in datamodule.predict_batches(texts):
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            owned = batch["owned"] >= 0
            with precision.autocast(self.compute_precision, self.device):
                logits = self(batch["input_ids"], batch["attention_mask"])
            probabilities = logits.float().softmax(-1)[owned].cpu()
            sentence, word = batch["sentence"].unsqueeze(1).expand_as(owned)[owned].cpu(), batch["owned"][owned].cpu()
            per_word: dict[int, dict[int, torch.Tensor]] = {}
            for s, w, p in zip(sentence.tolist(), word.tolist(), probabilities):
                per_word.setdefault(s, {})[w] = p
            for i, (_, spans) in zip(rows, sentences):
                found[i] = self._entities(texts[i], spans, per_word.get(i, {}))
        return found

    def _entities(self, text, spans: list[tuple[int, int]], words: dict[int, torch.Tensor]) -> dict:
        """The pipeline's grouping: a word continues the group before it when its type is the
        group's and its tag is not B-; groups of O are dropped."""
        shown = str(text)
        groups: list[list[tuple[str, float, int]]] = []
        for w in sorted(words):  # a word without sub-words is invisible to the model, as to the pipeline
            score, index = words[w].max(-1)
            tag = self.tags[int(index)]
            kind = tag[2:] if tag != OUTSIDE else OUTSIDE
            if groups and groups[-1][-1][0] == kind and not tag.startswith("B-"):
                groups[-1].append((kind, float(score), w))
            else:
                groups.append([(kind, float(score), w)])
        out = []
        for group in groups:
            kind, start, end = group[0][0], spans[group[0][2]][0], spans[group[-1][2]][1]
            if kind != OUTSIDE:
                score = float(np.mean([s for _, s, _ in group]))
                out.append(
                    {
                        "entity_group": kind,
                        "score": round(score, 6),
                        "word": shown[start:end],
                        "start": start,
                        "end": end,
                    }
                )
        return {"predicted": [[e["entity_group"], e["start"], e["end"]] for e in out], "entities": out}

    def score_predictions(self, truth: list, predicted: list) -> dict:
        """Entity precision, recall and F1 over the tagged sentences (an entity counts when its type
        and character span are exactly right)."""
        hits = sum(len({tuple(e) for e in t} & {tuple(e) for e in p}) for t, p in zip(truth, predicted))
        guessed, true = sum(len(p) for p in predicted), sum(len(t) for t in truth)
        return {
            "labelled_rows": len(truth),
            "precision": round(hits / guessed, 6) if guessed else 0.0,
            "recall": round(hits / true, 6) if true else 0.0,
            "f1": round(float(verdict.pooled_f1(np.array([hits]), np.array([guessed]), np.array([true]))), 6),
        }

    @torch.no_grad()
    def export(self, folder: Path, datamodule, onnx: bool = True) -> dict:
        """A transformers `AutoModelForTokenClassification` folder in float32 (the adapter merged,
        `id2label` the run's tags) with the tokenizer, which `pipeline("token-classification")`
        loads; and `model.onnx` (ids in, logits out)."""
        from transformers import AutoModelForTokenClassification

        from domaintune.errors import UserError
        from domaintune.modules import export

        self.merge()
        self.encoder.float()
        self.head.float()
        self.eval()
        config = copy.deepcopy(self.encoder.config)
        config.num_labels = len(self.tags)
        config.id2label, config.label2id = dict(enumerate(self.tags)), {t: i for i, t in enumerate(self.tags)}
        model = AutoModelForTokenClassification.from_config(config, dtype=torch.float32)
        loaded = model.base_model.load_state_dict(self.encoder.state_dict(), strict=False)
        classifier = getattr(model, "classifier", None)
        if loaded.missing_keys or loaded.unexpected_keys or not isinstance(classifier, nn.Linear):
            raise UserError(
                f"export: {type(model).__name__} is not an encoder with one linear token head "
                f"({(loaded.missing_keys or loaded.unexpected_keys or ['its head'])[0]}); this model cannot export"
            )
        classifier.weight.copy_(self.head[-1].weight)
        classifier.bias.copy_(self.head[-1].bias)
        model.save_pretrained(folder)
        self.backbone.load_tokenizer().save_pretrained(folder)
        if onnx:
            export.write_onnx(folder / "model.onnx", self, config.vocab_size, None)
        return {"library_name": "transformers", "usage": USAGE}


USAGE = """```python
from transformers import pipeline

tagger = pipeline("token-classification", model="path/to/this/folder", aggregation_strategy="first")
print(tagger("Metformin is first-line treatment for type 2 diabetes."))
```

`aggregation_strategy="first"` reads a word's tag on its first sub-word, as the model was trained
(`"simple"` would also read the other sub-words, which were never trained). `model.onnx` takes
`input_ids` and `attention_mask` and gives `logits` per token.
"""


register_kind(
    Kind(
        name="token_classification",
        module=TokenClassificationModule,
        datamodule=TokenClassificationDataModule,
        metrics={"loss": "min", "f1": "max", "precision": "max", "recall": "max", "token_acc": "max"},
        opponent=BASE_KIND,
        serves=frozenset({"predict"}),
        base=True,
        export="token-classification",
    )
)
