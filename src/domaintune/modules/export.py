"""A classifier in formats other libraries load without domaintune: the encoder as a
sentence-transformers folder, the head and label map as safetensors/JSON, and the whole model
(token ids in, probabilities out) as ONNX."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

# sentence-transformers' Pooling modes for ours; BERT's pooler output has none
SENTENCE_POOLING = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}

SOFTMAX_USAGE = """```python
import json
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

folder = "path/to/this/folder"
encoder = SentenceTransformer(folder)  # the merged encoder with our pooling and max_length
head = load_file(f"{{folder}}/classifier.safetensors")
labels = json.load(open(f"{{folder}}/classifier.json"))["labels"]
vectors = encoder.encode(["My card was charged twice"], convert_to_tensor=True)
probabilities = (vectors.cpu() @ head["weight"].T + head["bias"]).softmax(-1)
print([labels[i] for i in probabilities.argmax(-1)])
```

Or `model.onnx` in onnxruntime (token ids in, probabilities out):

```python
import onnxruntime
from transformers import AutoTokenizer

folder = "path/to/this/folder"
tokenizer = AutoTokenizer.from_pretrained(folder)
session = onnxruntime.InferenceSession(f"{{folder}}/model.onnx")
texts = ["My card was charged twice"]
batch = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="np")
probabilities = session.run(["probabilities"], {{k: batch[k] for k in ("input_ids", "attention_mask")}})[0]
```
"""

SIGMOID_USAGE = """```python
import json
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

folder = "path/to/this/folder"
encoder = SentenceTransformer(folder)  # the merged encoder with our pooling and max_length
head = load_file(f"{{folder}}/classifier.safetensors")
settings = json.load(open(f"{{folder}}/classifier.json"))
labels, thresholds = settings["labels"], torch.tensor(settings["thresholds"])  # chosen on validation
vectors = encoder.encode(["I was charged twice and nobody answers"], convert_to_tensor=True)
probabilities = (vectors.cpu() @ head["weight"].T + head["bias"]).sigmoid()  # one per label
print([[labels[j] for j in row.nonzero().flatten()] for row in probabilities >= thresholds])
```

Or `model.onnx` in onnxruntime (token ids in, one probability per label out; compare each with
its threshold in `classifier.json`):

```python
import onnxruntime
from transformers import AutoTokenizer

folder = "path/to/this/folder"
tokenizer = AutoTokenizer.from_pretrained(folder)
session = onnxruntime.InferenceSession(f"{{folder}}/model.onnx")
texts = ["I was charged twice and nobody answers"]
batch = tokenizer(texts, padding=True, truncation=True, max_length={max_length}, return_tensors="np")
probabilities = session.run(["probabilities"], {{k: batch[k] for k in ("input_ids", "attention_mask")}})[0]
```
"""

USAGE = {"softmax": SOFTMAX_USAGE, "sigmoid": SIGMOID_USAGE}  # by the classifier's activation


def write_sentence_transformers(
    folder: Path, hidden_size: int, pooling: str, max_length: int, normalize: bool = False
) -> bool:
    """The files that make `folder` (already holding the encoder and tokenizer) a
    sentence-transformers model, its vectors L2-normalized where the head reads them so
    (`normalize`: a probe on L2 features); False where our pooling has no sentence-transformers mode."""
    if pooling not in SENTENCE_POOLING:
        return False
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (folder / "2_Normalize").mkdir()
    modes = {mode: mode == SENTENCE_POOLING[pooling] for mode in SENTENCE_POOLING.values()}
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False})
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": hidden_size, **modes}, indent=2)
    )
    return True


def write_head(folder: Path, linear: nn.Linear, labels: list[str], pooling: str, max_length: int, **settings) -> None:
    from safetensors.torch import save_file

    save_file(
        {"weight": linear.weight.detach().float().contiguous(), "bias": linear.bias.detach().float().contiguous()},
        folder / "classifier.safetensors",
    )
    (folder / "classifier.json").write_text(
        json.dumps({"labels": labels, "pooling": pooling, "max_length": max_length, **settings}, indent=2)
    )


class Probabilities(nn.Module):
    """The classifier as ONNX sees it: token ids and mask in, probabilities out (softmax over
    classes, or a sigmoid per label for multi-label), or its logits (`activation` None: a token
    classifier's, as transformers' own ONNX exports give them)."""

    def __init__(self, classifier: nn.Module, activation: str | None):
        super().__init__()
        self.classifier, self.activation = classifier, activation

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(input_ids, attention_mask)
        if self.activation is None:
            return logits
        return logits.sigmoid() if self.activation == "sigmoid" else logits.softmax(-1)


def write_onnx(path: Path, classifier: nn.Module, vocab_size: int, activation: str | None) -> None:
    """`model.onnx`, one file, with batch and sequence length dynamic; its output is `probabilities`,
    or `logits` where `activation` is None."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        from domaintune.errors import UserError

        raise UserError(
            "model.onnx needs the export extra: pip install 'domaintune[export]' (or pass onnx=false)"
        ) from None
    model = Probabilities(classifier, activation).eval()
    ids = torch.randint(0, vocab_size, (2, 16))
    mask = torch.ones_like(ids)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings():  # both inputs share the two axes, which the exporter notes for each
        warnings.filterwarnings("ignore", message=r"# The axis name: \w+ will not be used")
        program = torch.onnx.export(
            model,
            (ids, mask),
            input_names=["input_ids", "attention_mask"],
            output_names=["probabilities" if activation else "logits"],
            dynamic_shapes={"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}},
            dynamo=True,
        )
    program.save(str(path), external_data=False)
