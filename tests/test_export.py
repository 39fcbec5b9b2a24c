"""`domaintune export` of a classification run: libraries nobody here wrote load it and give
our numbers (sentence-transformers: the same sentence vectors; onnxruntime: the same
probabilities), without domaintune."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import cli

TEXTS = [
    "My card was charged twice",  # the model card's example
    "How do I change the address on my account?",
    "Thanks, the refund arrived quickly!",
    "short",
    "The app keeps logging me out whenever I try to transfer money to a friend abroad, which is annoying " * 3,
]


def train_run(make_cfg, *overrides: str) -> Path:
    from domaintune import registry
    from domaintune.train import train

    registry.discover()
    cfg = make_cfg("logger=none", "task=support", "trainer.max_epochs=1", *overrides)
    train(cfg)
    return Path(cfg.paths.run_dir)


def ours(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Sentence vectors and probabilities from the run as domaintune loads it (adapter unmerged)."""
    from domaintune.runs import load_run

    finished = load_run(run)
    tokenizer = finished.module.backbone.load_tokenizer()
    batch = tokenizer(
        TEXTS, padding=True, truncation=True, max_length=finished.datamodule.max_length, return_tensors="pt"
    )
    with torch.no_grad():
        vectors = finished.module.embed(batch["input_ids"], batch["attention_mask"])
        probabilities = finished.module.head(vectors).softmax(-1)
    return vectors.numpy(), probabilities.numpy()


@pytest.mark.slow
def test_export_loads_in_sentence_transformers_and_onnxruntime_with_our_outputs(make_cfg, tmp_path):
    import onnxruntime
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    run = train_run(make_cfg, "model=minilm", "peft=lora", "data.max_length=32")
    vectors, probabilities = ours(run)

    result = cli("export", f"run={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    folder = run / "export"

    encoder = SentenceTransformer(str(folder), device="cpu")
    assert encoder.max_seq_length == 32  # the run's truncation, so long texts give the same vectors
    theirs = encoder.encode(TEXTS, convert_to_numpy=True)
    cosine = (theirs * vectors).sum(-1) / np.linalg.norm(theirs, axis=-1) / np.linalg.norm(vectors, axis=-1)
    assert cosine.min() > 0.9999, cosine

    head = load_file(folder / "classifier.safetensors")
    card = json.loads((folder / "classifier.json").read_text())
    labels = card["labels"]
    from_head = (torch.from_numpy(theirs) @ head["weight"].T + head["bias"]).softmax(-1).numpy()
    assert np.abs(from_head - probabilities).max() < 1e-4

    tokenizer = AutoTokenizer.from_pretrained(folder)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    for texts, rows in ((TEXTS, slice(None)), (TEXTS[:1], slice(0, 1))):  # batch and sequence length vary
        batch = tokenizer(texts, padding=True, truncation=True, max_length=card["max_length"], return_tensors="np")
        (onnx_probabilities,) = session.run(
            ["probabilities"], {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        )
        assert np.abs(onnx_probabilities - probabilities[rows]).max() < 1e-4
    assert [labels[i] for i in onnx_probabilities.argmax(-1)] == [labels[int(probabilities[0].argmax())]]

    readme = (folder / "README.md").read_text()
    assert "library_name: sentence-transformers" in readme and "pipeline_tag: text-classification" in readme
    snippets = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(snippets) == 2
    for snippet in snippets:  # the card's usage runs as written, given the folder's path
        scope: dict = {}
        exec(snippet.replace("path/to/this/folder", str(folder)), scope)
        assert np.allclose(np.asarray(scope["probabilities"]), probabilities[:1], atol=1e-4)


@pytest.mark.parametrize("pooling", ["cls", "pooler"])
def test_export_without_onnx_and_refusals(make_cfg, tmp_path, pooling):
    run = train_run(make_cfg, "model=tiny", "peft=none", f"model.pooling={pooling}")
    result = cli("export", f"run={run}", "onnx=false", f"out={tmp_path / 'plain'}")
    assert result.returncode == 0, result.stderr[-2000:]
    written = {p.name for p in (tmp_path / "plain").iterdir()}
    assert {"model.safetensors", "config.json", "classifier.safetensors", "classifier.json", "README.md"} <= written
    assert "model.onnx" not in written
    card = (tmp_path / "plain" / "README.md").read_text()
    assert "Method: full fine-tuning." in card and "adapter is merged" not in card
    scores = json.loads((run / "metrics.json").read_text())["verdict"]["metrics"]["acc"]
    assert f"| test/acc | {scores['fine_tuned']:.4f} | {scores['base']:.4f} |" in card  # the base model's test figure
    if pooling == "cls":
        pooled = json.loads((tmp_path / "plain" / "1_Pooling" / "config.json").read_text())
        assert pooled["pooling_mode_cls_token"] and not pooled["pooling_mode_mean_tokens"]
        assert "library_name: sentence-transformers" in card
    else:  # sentence-transformers has no mode for BERT's pooler output: not offered as one
        assert "modules.json" not in written and "1_Pooling" not in written
        assert "library_name: transformers" in card and "pooling=pooler has no sentence-transformers" in card

    again = cli("export", f"run={run}", f"out={tmp_path / 'plain'}")
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    bad = cli("export", f"run={run}", "onnx=maybe", f"out={tmp_path / 'other'}")
    assert bad.returncode == 2 and "use onnx=true or onnx=false" in bad.stderr
    assert not (tmp_path / "other").exists()


def test_use_base_predicts_the_verdicts_base_scores_and_exports_the_probe(tiny_run, copy_run, tmp_path):
    """The cheaper model the verdict compares with, delivered: `predict use=base` on the run's own
    test rows scores what the verdict says the base model scored, and `export use=base` loads in
    sentence-transformers and onnxruntime with the same probabilities."""
    import onnxruntime
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from domaintune.data.splits import load_splits
    from domaintune.runs import choose_model, load_run

    run = copy_run(tiny_run[0])
    finished = load_run(run)
    data = finished.datamodule
    test = load_splits(data.path, data.reader, data.val_fraction, data.test_fraction, data.seed, data.dedupe)[0][
        "test"
    ]
    test[["text", "label"]].to_csv(tmp_path / "test.csv", index=False)
    result = cli("predict", f"run={run}", f"data.path={tmp_path / 'test.csv'}", "use=base", f"out={tmp_path / 'base'}")
    assert result.returncode == 0, result.stderr[-2000:]
    scored = json.loads((tmp_path / "base" / "metrics.json").read_text())["metrics"]
    verdict = json.loads((run / "metrics.json").read_text())["verdict"]["metrics"]
    assert scored["acc"] == pytest.approx(verdict["acc"]["base"], abs=1e-6) and scored["labelled_rows"] == len(test)
    assert scored["macro_f1"] == pytest.approx(verdict["macro_f1"]["base"], abs=1e-6)

    result = cli("export", f"run={run}", "use=base")
    assert result.returncode == 0, result.stderr[-2000:]
    folder = run / "export-base"
    choose_model(finished, "base")
    expected = np.array([row["top3"][0][1] for row in finished.module.predict(TEXTS, data)])
    vectors = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_tensor=True).cpu()
    head = load_file(folder / "classifier.safetensors")
    assert (
        np.abs((vectors @ head["weight"].T + head["bias"]).softmax(-1).max(-1).values.numpy() - expected).max() < 1e-4
    )
    batch = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, truncation=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    (probabilities,) = session.run(["probabilities"], {k: batch[k] for k in ("input_ids", "attention_mask")})
    assert np.abs(probabilities.max(-1) - expected).max() < 1e-4
    assert "base model + linear probe" in (folder / "README.md").read_text()
