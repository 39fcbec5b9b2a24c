"""A causal LM fine-tuned (usually through a peft adapter) on instruction data, judged against
the same model without the adapter: validation loss, perplexity and generation quality."""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torchmetrics import MeanMetric

from domaintune import precision, tracking, verdict
from domaintune.api import TaskModule
from domaintune.data.instruction import InstructionDataModule
from domaintune.kinds import Kind, register_kind
from domaintune.models import Backbone
from domaintune.modules.shared import gather_rows

log = logging.getLogger(__name__)
_BASELINES: dict[tuple, dict] = {}  # (model, data, generation settings) -> base model's val scores, once per process


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (torchmetrics' implementation), 0..1."""
    from torchmetrics.functional.text.rouge import rouge_score

    if not predictions:
        return 0.0
    return float(rouge_score(predictions, references, rouge_keys="rougeL")["rougeL_fmeasure"])


def exact_match(predictions: list[str], references: list[str]) -> float:
    def norm(text: str) -> str:
        return re.sub(r"\s+", " ", text).strip().lower()

    return sum(norm(p) == norm(r) for p, r in zip(predictions, references)) / max(len(predictions), 1)


@torch.no_grad()
def generate(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy answers, in left-padded batches, decoded without the prompt and special tokens."""
    pad = tokenizer.pad_token_id or 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    answers = []
    for start in range(0, len(prompt_ids), batch_size):
        chunk = prompt_ids[start : start + batch_size]
        width = max(len(p) for p in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long, device=device)
        mask = torch.zeros_like(input_ids)
        for r, ids in enumerate(chunk):
            input_ids[r, width - len(ids) :] = torch.as_tensor(ids, device=device)
            mask[r, width - len(ids) :] = 1
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
        )
        answers += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    model.train(was_training)
    return answers


LOGIT_CHUNK = 256  # scored tokens per slice of vocabulary logits (256 x 49k vocabulary x fp32 = 50 MB)


def response_nll(model, batch: dict) -> tuple[torch.Tensor, int]:
    """Mean token loss over response tokens, and their count."""
    losses, _ = response_token_losses(model, batch)
    return losses.sum() / max(len(losses), 1), len(losses)


def response_token_losses(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of every scored response token and the batch row it belongs to: hidden states of
    all tokens, logits only where a next token is scored (the prompt's never reach the vocabulary
    projection)."""
    hidden = model.get_decoder()(
        input_ids=batch["input_ids"],
        attention_mask=batch.get("attention_mask"),
        position_ids=batch.get("position_ids"),
        use_cache=False,
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    scored = targets != -100
    losses = _scored_losses(model.get_output_embeddings(), hidden[:, :-1][scored], targets[scored], model.config)
    return losses, scored.nonzero()[:, 0]


def _scored_losses(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, config) -> torch.Tensor:
    """Cross-entropy of each `hidden` row against its target, LOGIT_CHUNK rows of logits at a time.
    The vocabulary logits are a small LM's largest activation (batch 8 x 200 tokens of SmolLM2: 0.3
    GB, and as much again for their gradient); in training each slice is recomputed in backward
    instead of kept, for one extra vocabulary projection."""
    from torch.utils.checkpoint import checkpoint

    parts = []
    for start in range(0, len(hidden), LOGIT_CHUNK):
        rows, wanted = hidden[start : start + LOGIT_CHUNK], targets[start : start + LOGIT_CHUNK]
        if torch.is_grad_enabled() and rows.requires_grad:
            parts.append(checkpoint(_token_losses, head, rows, wanted, config, use_reentrant=False))
        else:
            parts.append(_token_losses(head, rows, wanted, config))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def _token_losses(head: torch.nn.Module, rows: torch.Tensor, wanted: torch.Tensor, config) -> torch.Tensor:
    """What the model's own forward does to its logits after the projection goes here too
    (Cohere's logit_scale, Granite's logits_scaling, Gemma 2's final soft-capping)."""
    logits = head(rows).float()
    if getattr(config, "logit_scale", None):
        logits = logits * config.logit_scale
    if getattr(config, "logits_scaling", None):
        logits = logits / config.logits_scaling
    if getattr(config, "final_logit_softcapping", None):
        logits = torch.tanh(logits / config.final_logit_softcapping) * config.final_logit_softcapping
    return torch.nn.functional.cross_entropy(logits, wanted, reduction="none")


def row_sums(losses: torch.Tensor, rows: torch.Tensor, batch_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per batch row: the summed token loss and the number of scored tokens."""
    sums = torch.zeros(batch_rows, dtype=torch.float32, device=losses.device).index_add_(
        0, rows, losses.detach().float()
    )
    return sums, torch.bincount(rows, minlength=batch_rows).float()


def rouge_rows(answers: list[str], references: list[str]) -> list[float]:
    """ROUGE-L F1 of each answer against its reference (the verdict's per-row values)."""
    from torchmetrics.functional.text.rouge import rouge_score

    return [float(rouge_score(a, r, rouge_keys="rougeL")["rougeL_fmeasure"]) for a, r in zip(answers, references)]


BASE_KIND = "the same model without fine-tuning"


class CausalLMModule(TaskModule):
    """Loss on response tokens only (`response_nll`). Every validation epoch logs
    `val/loss`, `val/ppl` and, on a fixed subset of validation prompts, `val/rougeL` (and
    `val/exact_match` when the task asks for it); any of them can be the sweep metric."""

    def __init__(
        self,
        backbone: Backbone,
        tokenizer,
        peft_config=None,
        *,  # the rest from conf/module/causal_lm.yaml, where their defaults are
        lr: float,
        weight_decay: float,
        warmup_ratio: float,
        schedule: str,
        generate_rows: int,
        test_generate_rows: int,
        max_new_tokens: int,
        exact_match: bool,
        gradient_checkpointing: bool,
    ):
        super().__init__(peft_config)
        self.save_hyperparameters(ignore=["backbone", "tokenizer", "peft_config"], logger=False)
        self.backbone, self.tokenizer = backbone, tokenizer
        model = backbone.load_model(share_weights=peft_config is not None)  # adapters leave base weights as they are
        model.config.use_cache = False
        if gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model = self.adapt(model, peft_config)
        if peft_config is not None and gradient_checkpointing:
            model.enable_input_require_grads()  # checkpointed blocks need a grad path through frozen embeddings
        self.model = model
        self.val_nll, self.test_nll, self.base_test_nll = MeanMetric(), MeanMetric(), MeanMetric()
        self.baseline: dict[str, float] = {}
        self.test_verdict: dict = {}
        self.test_rows: dict[str, list[torch.Tensor]] = {}
        self.samples: list[dict] = []
        self._base_copy = None  # full fine-tuning: the untouched base model, loaded when needed

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, count = response_nll(self.model, batch)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=count)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, count = response_nll(self.model, batch)
        self.val_nll.update(loss, count)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_nll.compute()
        self.val_nll.reset()
        rows = self.hparams.generate_rows
        rows = min(2, rows) if self.trainer.sanity_checking else rows  # the sanity check stays quick
        scores = self._generation_scores("val", rows, prefix="val/")
        self.log_dict({"val/loss": loss, "val/ppl": torch.exp(loss), **scores}, prog_bar=True, sync_dist=True)

    def on_test_start(self) -> None:
        self.test_rows = {key: [] for key in ("tuned_nll", "base_nll", "tokens")}

    def test_step(self, batch: dict, batch_idx: int) -> None:
        rows = len(batch["input_ids"])
        tuned, tokens = row_sums(*response_token_losses(self.model, batch), rows)
        with self._base_model() as base:
            base_sums, _ = row_sums(*response_token_losses(base, batch), rows)
        count = tokens.sum().clamp(min=1)
        self.test_nll.update(tuned.sum() / count, count)
        self.base_test_nll.update(base_sums.sum() / count, count)
        for key, values in (("tuned_nll", tuned), ("base_nll", base_sums), ("tokens", tokens)):
            self.test_rows[key].append(values.cpu())

    def on_test_epoch_end(self) -> None:
        loss, base_loss = self.test_nll.compute(), self.base_test_nll.compute()
        scores = {"test/loss": loss, "test/ppl": torch.exp(loss)}
        base_scores = {"test/loss": float(base_loss), "test/ppl": math.exp(float(base_loss))}
        rows = {key: gather_rows(self, parts) for key, parts in self.test_rows.items()}
        self.scored = {"loss": verdict.Scored("token_mean", (rows["tuned_nll"], rows["tokens"]), mode="min")}
        base_scored = {"loss": verdict.Scored("token_mean", (rows["base_nll"], rows["tokens"]), mode="min")}
        prompts, references, tuned, untuned = [], [], [], []
        if self.hparams.test_generate_rows > 0:
            prompts, references, tuned = self._generate("test", self.hparams.test_generate_rows)
            with self._base_model() as base:
                _, _, untuned = self._generate("test", self.hparams.test_generate_rows, base)
            scores.update(self._score(tuned, references, "test/"))
            base_scores.update(self._score(untuned, references, "test/"))
            self.scored["rougeL"] = verdict.Scored("mean", (np.array(rouge_rows(tuned, references)),))
            base_scored["rougeL"] = verdict.Scored("mean", (np.array(rouge_rows(untuned, references)),))
        compared = [verdict.compare_scored(name, self.scored[name], base_scored[name]) for name in self.scored]
        self.log_dict(scores, sync_dist=True)
        self.baseline.update({k: round(float(v), 6) for k, v in base_scores.items()})
        self.test_verdict = verdict.verdict(compared, BASE_KIND, "the base model as it is")
        self.samples = [
            {"prompt": p, "reference": r, "fine_tuned": t, "base": b}
            for p, r, t, b in zip(prompts, references, tuned, untuned)
        ]

    # -- generation ----------------------------------------------------------------------------
    @contextmanager
    def _base_model(self):
        """The base model on the same rows: the adapter switched off, or (full fine-tuning) a fresh copy."""
        if self.has_adapter:
            with self.model.disable_adapter():
                yield self.model
        else:
            if self._base_copy is None:
                self._base_copy = self.backbone.load_model().to(self.device).eval()
            yield self._base_copy

    def on_test_end(self) -> None:
        self._base_copy = None

    def _generate(self, split: str, count: int, model=None) -> tuple[list[str], list[str], list[str]]:
        """Greedy answers to the first `count` prompts of a split, in the trainer's precision."""
        prompt_ids, prompts, references = self.trainer.datamodule.generation_rows(split, count)
        with self.trainer.precision_plugin.val_step_context():
            answers = generate(
                model or self.model,
                self.tokenizer,
                prompt_ids,
                self.hparams.max_new_tokens,
                self.trainer.datamodule.eval_batch_size,
            )
        return prompts, references, answers

    def _score(self, answers: list[str], references: list[str], prefix: str) -> dict[str, float]:
        scores = {f"{prefix}rougeL": rouge_l(answers, references)}
        if self.hparams.exact_match:
            scores[f"{prefix}exact_match"] = exact_match(answers, references)
        return scores

    def _generation_scores(self, split: str, count: int, prefix: str) -> dict[str, float]:
        if count <= 0:
            return {}
        prompts, references, answers = self._generate(split, count)
        if not self.trainer.sanity_checking:
            self._log_samples(prompts, references, answers)
        return self._score(answers, references, prefix)

    def _log_samples(self, prompts: list[str], references: list[str], answers: list[str]) -> None:
        """A W&B table of this epoch's generations (when W&B logs the run)."""
        for logger in tracking.wandb_loggers(self.loggers):
            rows = [[self.current_epoch, p, r, a] for p, r, a in zip(prompts, references, answers)][:16]
            logger.log_table(key="val/samples", columns=["epoch", "prompt", "reference", "generated"], data=rows)

    def on_fit_start(self) -> None:
        """The base model's validation scores, once per process: every run says whether it beat them."""
        datamodule = self.trainer.datamodule
        key = (
            self.backbone.key,
            datamodule.fingerprint,
            self.hparams.generate_rows,
            self.hparams.max_new_tokens,
            self.hparams.exact_match,
        )
        if key not in _BASELINES:
            nll = MeanMetric().to(self.device)
            with self._base_model() as base, torch.no_grad(), self.trainer.precision_plugin.val_step_context():
                base.eval()
                for batch in datamodule.val_dataloader():
                    loss, count = response_nll(base, self.transfer_batch_to_device(batch, self.device, 0))
                    nll.update(loss, count)
                _, references, answers = self._generate("val", self.hparams.generate_rows, base)
            loss = float(nll.compute())
            _BASELINES[key] = {"val/loss": loss, "val/ppl": math.exp(loss), **self._score(answers, references, "val/")}
            self.model.train()
            self._base_copy = None
        self.baseline = {k: round(float(v), 6) for k, v in _BASELINES[key].items()}
        log.info("base model (no fine-tuning) on validation: %s", self.baseline)

    # -- the run's outputs ---------------------------------------------------------------------
    def load_weights(self, folder: Path) -> None:
        """Start from a finished run's adapter (or whole model): `init_from`."""
        from safetensors.torch import load_file

        from domaintune.errors import UserError

        if (folder / "adapter").is_dir() != self.has_adapter:
            raise UserError(
                f"init_from={folder}: that run's peft setting differs from this one; use the same peft config"
            )
        if self.has_adapter:
            from peft import set_peft_model_state_dict

            unexpected = set_peft_model_state_dict(
                self.model, load_file(folder / "adapter" / "adapter_model.safetensors")
            ).unexpected_keys
        else:
            unexpected = self.model.load_state_dict(
                load_file(folder / "model" / "model.safetensors"), strict=False
            ).unexpected_keys
        self.check_fits(folder, unexpected)

    def report(self) -> dict:
        """The test verdict and the base model's validation (and test) scores, for metrics.json."""
        return {
            **({"verdict": self.test_verdict} if self.test_verdict else {}),
            **({"baseline": {"kind": "the same model without fine-tuning", **self.baseline}} if self.baseline else {}),
        }

    def save_artifacts(self, folder: Path) -> None:
        """The adapter (or whole model) in safetensors, the tokenizer, and the test generations
        side by side with the base model's."""
        self.model.save_pretrained(folder / ("adapter" if self.has_adapter else "model"))
        self.tokenizer.save_pretrained(folder / "tokenizer")
        self.save_test_outputs(folder)

    def test_every_row(self, rows: int) -> None:
        self.hparams.test_generate_rows = rows  # new test data: both models answer every prompt

    def save_test_outputs(self, folder: Path) -> None:
        """Both models' answers to the test prompts, side by side with the reference."""
        if self.samples:
            with open(folder / "samples.jsonl", "w") as handle:
                for sample in self.samples:
                    handle.write(json.dumps(sample, ensure_ascii=False) + "\n")

    def predict(self, texts: list[str], datamodule, max_new_tokens: int | None = None) -> list[str]:
        """Greedy answers to raw prompts, rendered as the run's data was (system prompt, template, chat template)."""
        with precision.autocast(self.compute_precision, self.device):
            return generate(
                self.model, self.tokenizer, datamodule.prompt_ids(texts), max_new_tokens or self.hparams.max_new_tokens
            )

    def export(self, folder: Path, datamodule, **options) -> dict:
        """The adapter merged into the weights: a folder AutoModelForCausalLM loads. The merge works on a
        copy: under an adapter the base tensors are shared with this process's other runs (load_model)."""
        merged = copy.deepcopy(self.model).merge_and_unload() if self.has_adapter else self.model
        merged.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        usage = (
            "```python\nfrom transformers import pipeline\n\n"
            'generate = pipeline("text-generation", model="path/to/this/folder")\n'
            'print(generate([{"role": "user", "content": "..."}], max_new_tokens=128))\n```\n'
        )
        return {"library_name": "transformers", "usage": usage}


register_kind(
    Kind(
        name="causal_lm",
        module=CausalLMModule,
        datamodule=InstructionDataModule,
        metrics={"loss": "min", "ppl": "min", "rougeL": "max", "exact_match": "max"},
        opponent=BASE_KIND,
        serves=frozenset({"generate"}),
        export="text-generation",
    )
)
