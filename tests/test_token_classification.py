"""Entity recognition: token files read as published (CoNLL and JSON lines, IOB2 and IOBES, an
illegal continuation repaired or refused with its line), entities and scores as seqeval defines
them, long sentences windowed so every word is decided once, and a finished run whose predict,
exported pipeline and ONNX model give the same entities."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from domaintune.data.token_classification import joined
from domaintune.data.tokens import TokenReader, entities
from domaintune.errors import DataError
from helpers import TINY, cli, error_line, metrics

MEDICAL = Path(__file__).resolve().parents[1] / "plugins" / "medical" / "data" / "sentences.jsonl"


def test_conll_files_are_read_as_published(tmp_path):
    path = tmp_path / "train.conll"
    # a document marker, extra columns between token and tag, a space-separated line, and a
    # sentence break written as a line of spaces
    path.write_text(
        "-DOCSTART- -X- O O\n\nBRCA1\tNNP\tB-NP\tO\nmutations\tNNS\tI-NP\tO\ncause\tVBP\tB-VP\tO\n"
        "breast\tNN\tB-NP\tB-Disease\ncancer\tNN\tI-NP\tI-Disease\n   \nAtaxia B-Disease\n.\tO\n"
    )
    frame, found = TokenReader().read(path)
    assert frame.tokens.tolist() == [["BRCA1", "mutations", "cause", "breast", "cancer"], ["Ataxia", "."]]
    assert frame.tags.tolist() == [["O", "O", "O", "B-Disease", "I-Disease"], ["B-Disease", "O"]]
    assert frame.text.tolist()[1] == "Ataxia ." and found == {"scheme": "IOB2", "repaired": 0, "empty": 0}


def test_iobes_comes_out_as_iob2_with_the_same_entities(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [
        {"words": ["a", "b", "c", "d"], "ner_tags": ["B-Drug", "I-Drug", "E-Drug", "S-Disease"]},
        {"words": ["e"], "ner_tags": ["S-Drug"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    frame, found = TokenReader().read(path)
    assert frame.tags.tolist() == [["B-Drug", "I-Drug", "I-Drug", "B-Disease"], ["B-Drug"]]
    path.write_text(json.dumps({"words": ["a", "b"], "ner_tags": ["S-Drug", "E-Drug"]}) + "\n" + path.read_text())
    with pytest.raises(DataError, match=r"row 1, token 2: 'E-Drug' continues an entity that never began"):
        TokenReader(strict=True).read(path)
    assert entities(frame.tags[0]) == [("Drug", 0, 3), ("Disease", 3, 4)] and found["scheme"] == "IOBES"


def test_an_illegal_continuation_is_read_as_a_start_or_refused_with_its_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("the\tO\nfever\tI-Symptom\nrose\tO\n\nchest\tB-Symptom\npain\tI-Symptom\ncough\tB-Symptom\n")
    frame, found = TokenReader().read(path)
    assert frame.tags[0] == ["O", "B-Symptom", "O"] and found["repaired"] == 1 and found["scheme"] == "IOB2"
    iob1 = tmp_path / "iob1.tsv"  # IOB1: entities begin with I-, B- only where one follows another of its type
    iob1.write_text("the\tO\nfever\tI-Symptom\nrose\tO\n\nchest\tI-Symptom\npain\tI-Symptom\ncough\tB-Symptom\n")
    frame, found = TokenReader(strict=True).read(iob1)
    assert (
        frame.tags[1] == ["B-Symptom", "I-Symptom", "B-Symptom"]
        and found["scheme"] == "IOB1"
        and not found["repaired"]
    )
    with pytest.raises(DataError, match=r"train.tsv: line 2: 'I-Symptom' continues an entity that never began"):
        TokenReader(strict=True).read(path)
    result = cli("train", "task=medical", f"data.path={path}", "data.strict=true", *TINY)
    assert result.returncode == 2 and "line 2" in error_line(result) and "Traceback" not in result.stderr


def test_entities_and_scores_are_seqevals():
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    from domaintune.modules.token_classification import entity_scores

    rng = random.Random(0)
    tags = ["O", "B-Drug", "I-Drug", "B-Disease", "I-Disease"]  # illegal continuations included
    truth = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    guess = [[t if rng.random() < 0.7 else rng.choice(tags) for t in row] for row in truth]
    for row in truth:
        assert entities(row) == [(kind, start, end + 1) for kind, start, end in get_entities(row)]
    scores = entity_scores(truth, guess)
    assert scores["f1"] == pytest.approx(f1_score(truth, guess), abs=1e-6)
    assert scores["precision"] == pytest.approx(precision_score(truth, guess), abs=1e-6)
    assert scores["recall"] == pytest.approx(recall_score(truth, guess), abs=1e-6)


def test_a_long_sentence_is_split_into_windows_that_decide_each_word_once(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg("task=medical", "model=tiny", "data.max_length=16", "data.stride=4")
    backbone = instantiate(cfg.model, _partial_=True)()
    datamodule = instantiate(cfg.data, _partial_=True)(tokenizer=backbone.load_tokenizer())
    words = ["paracetamol", "and", "amoxicillin", "for", "community-acquired", "pneumonia", ","] * 6
    windows = datamodule.encode([joined(words)], [list(range(len(words)))])[0]
    assert len(windows) > 2 and all(len(ids) <= 16 for ids, _, _ in windows)
    decided = sorted(w for _, _, owned in windows for w in owned if w >= 0)
    assert decided == list(range(len(words)))  # every word once, by exactly one window
    for ids, labels, owned in windows:  # tags sit on first sub-words, the words a window decides among them
        assert set(owned[owned >= 0]) <= set(labels[labels >= 0]) and ids[0] == datamodule.prefix[0]
    (unseen,) = datamodule.encode([joined(["\u200b"])], [[1]])[0]  # a word without sub-words: specials alone
    assert (unseen[1] < 0).all() and (unseen[2] < 0).all()


def test_the_run_reports_an_entity_verdict_per_type_and_the_data(token_run):
    found = metrics(token_run[0])
    assert found["best"]["metric"] == "val/f1" and set(found["verdict"]["metrics"]) == {"f1", "token_acc"}
    assert found["verdict"]["metrics"]["f1"]["rows"] == found["data"]["test_rows"] == 40
    assert set(found["per_type"]) == {"Disease", "Drug", "Symptom"} and "seqeval" in found["metric_mode"]
    assert found["data"]["windowed_sentences"]["train"] > 0 and found["data"]["entities"]["train"]["Drug"] > 200
    assert "C" in found["baseline"] and "val/f1" in found["baseline"]


def test_predict_the_exported_pipeline_and_onnx_give_the_same_entities(token_run, tmp_path):
    """With a head drawn at random (entities everywhere, illegal continuations included), our
    predict and transformers' pipeline on the exported folder agree on every entity of the
    sentences that fit one window, scores included; onnxruntime's logits match ours."""
    import onnxruntime
    from transformers import AutoTokenizer, pipeline

    from domaintune.runs import load_run

    finished = load_run(token_run[0])
    module, datamodule = finished.module, finished.datamodule
    torch.manual_seed(1)
    module.head[-1].weight.data.normal_(0, 1.0)
    module.head[-1].bias.data.normal_(0, 1.0)
    rows = [json.loads(line) for line in MEDICAL.read_text().splitlines()[:40]]
    texts = [" ".join(row["tokens"]).replace(" ,", ",").replace(" .", ".") for row in rows]
    ours = module.predict(texts, datamodule)
    module.export(tmp_path / "export", datamodule)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "export")
    tagger = pipeline("token-classification", model=str(tmp_path / "export"), aggregation_strategy="first")
    compared = 0
    for text, found in zip(texts, ours):
        if len(tokenizer(text)["input_ids"]) > datamodule.max_length:
            continue  # windowed by us, read whole by the pipeline
        theirs = tagger(text)
        assert [[e["entity_group"], e["start"], e["end"]] for e in theirs] == found["predicted"]
        assert [float(e["score"]) for e in theirs] == pytest.approx([e["score"] for e in found["entities"]], abs=1e-4)
        compared += len(theirs)
    assert compared > 100
    batch = tokenizer(texts[:8], padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    logits = session.run(["logits"], {k: batch[k] for k in ("input_ids", "attention_mask")})[0]
    with torch.no_grad():
        expected = module(torch.as_tensor(batch["input_ids"]), torch.as_tensor(batch["attention_mask"])).numpy()
    assert np.abs(logits - expected)[batch["attention_mask"].astype(bool)].max() < 1e-4


def test_predict_on_a_tagged_file_scores_its_entities(token_run, copy_run, tmp_path):
    path = tmp_path / "test.conll"
    path.write_text("Metformin\tB-Drug\nhelps\tO\n\nasthma\tB-Disease\nflares\tO\n")
    run = copy_run(token_run[0])
    result = cli("predict", f"run={run}", f"data.path={path}", f"out={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["metrics"]["labelled_rows"] == 2 and {"precision", "recall", "f1"} <= set(summary["metrics"])
    table = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert table[0] == "text,labels,predicted,entities,correct" and table[1].startswith(
        'Metformin helps,"[[""Drug"", 0, 9]]"'
    )


def test_prepare_reports_entities_per_type_and_windows(tmp_path):
    result = cli(
        "prepare", "task=medical", "data.max_length=32", "data.stride=8", f"out={tmp_path / 'prepared'}", *TINY[:1]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "prepared" / "summary.json").read_text())
    assert (
        set(summary["entities"]["train"]) == {"Disease", "Drug", "Symptom"} and summary["windowed_train_sentences"] > 0
    )
    assert "## Entities" in (tmp_path / "prepared" / "report.md").read_text()


def test_a_csv_of_word_rows_and_tags_written_as_ids_are_read(tmp_path):
    words = tmp_path / "ner.csv"  # one word a row, the sentence number on its first row only
    words.write_text(
        "Sentence #,Word,POS,Tag\nSentence: 1,Aspirin,NNP,B-Drug\n,helps,VBZ,O\nSentence: 2,Fever,NN,B-Symptom\n"
    )
    frame, _ = TokenReader().read(words)
    assert frame.tokens.tolist() == [["Aspirin", "helps"], ["Fever"]] and frame.tags[1] == ["B-Symptom"]
    ids = tmp_path / "train.jsonl"  # a Hugging Face dataset's ner_tags
    ids.write_text('{"tokens": ["Aspirin", "helps"], "ner_tags": [1, 0]}\n')
    with pytest.raises(DataError, match=r"tags are ids .*data.tag_names"):
        TokenReader().read(ids)
    frame, _ = TokenReader.from_data({"tag_names": ["O", "B-Drug", "I-Drug"]}, ids).read(ids)
    assert frame.tags[0] == ["B-Drug", "O"]
