"""Generative fine-tuning on the tiny random Llama: data rendering and masking, packing, a full run,
generate and export."""

import itertools
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from domaintune import registry
from domaintune.data.instruction import packed_collate, padded_collate
from domaintune.errors import DataError
from helpers import IN_PROCESS, TINY_CAUSAL, cli, phrase, read_wandb, the_run

TINY = TINY_CAUSAL


@pytest.fixture
def datamodule(make_cfg, tmp_path):
    def build(*overrides):
        registry.discover()
        cfg = make_cfg("task=support_replies", *TINY, *overrides)
        dm = instantiate(cfg.data, _partial_=True)(tokenizer=instantiate(cfg.model).load_tokenizer())
        dm.setup("fit")
        dm.model_spec = cfg.model
        return dm

    return build


def test_prompt_tokens_are_masked_and_the_chat_template_is_used(datamodule):
    dm = datamodule()
    ids, prompt_len = dm.datasets["train"][0]
    batch = padded_collate(0)([(ids, prompt_len)])
    assert (batch["labels"][0, :prompt_len] == -100).all()
    assert (batch["labels"][0, prompt_len : len(ids)] == torch.as_tensor(ids[prompt_len:])).all()
    prompt = dm.tokenizer.decode(ids[:prompt_len])
    assert prompt.startswith("<|im_start|>system\nYou are a friendly") and prompt.endswith("<|im_start|>assistant\n")
    assert dm.tokenizer.decode(ids[prompt_len:]).endswith(dm.tokenizer.eos_token)  # the model learns to stop
    assert {k: len(v) for k, v in dm.datasets.items()} == {
        "train": 264,
        "test": 33,
        "val": 33,
    }  # 330 rows, 10 % / 10 %


def test_long_rows_are_cut_or_dropped_and_counted(datamodule, tmp_path):
    rows = [{"prompt": "short question", "response": "word " * 300}, {"prompt": "word " * 300, "response": "ok"}]
    rows += [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(20)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dm = datamodule(f"data.path={tmp_path / 'd.jsonl'}", "data.max_length=64")
    assert dm.length_report == {"truncated": 1, "dropped": 1}
    assert max(len(ids) for ds in dm.datasets.values() for ids in ds.ids) <= 64


def test_chat_messages_column_takes_the_last_assistant_turn_as_response(datamodule, tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
        for i in range(20)
    ]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dm = datamodule(f"data.path={tmp_path / 'chat.jsonl'}", "data.system_prompt=null")
    ids, prompt_len = dm.datasets["train"][0]
    assert dm.tokenizer.decode(ids[prompt_len:]).startswith("hello ")


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"question": "q", "reply_text": "r"}] * 20, "cannot tell which column holds the response"),
        (
            [{"messages": [{"role": "user", "content": "q"}]}] * 20,
            "row 1: the last message must be the assistant's reply",
        ),
    ],
)
def test_bad_instruction_data_is_a_one_line_error(datamodule, tmp_path, rows, message):
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=message):
        datamodule(f"data.path={tmp_path / 'bad.jsonl'}")


def test_packed_examples_do_not_attend_to_each_other(datamodule):
    """The loss of two examples packed in one row equals their loss as separate padded rows."""
    dm = datamodule()
    rows = [dm.datasets["train"][i] for i in (0, 1)]
    model = instantiate(dm.model_spec, dtype="float32").load_model().eval()
    padded, packed = padded_collate(0)(rows), packed_collate(0)([rows])
    assert "attention_mask" not in packed and packed["position_ids"][0, len(rows[0][0])] == 0
    with torch.no_grad():  # no cache: as in training, where the packed mask applies
        separate = model(
            input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], use_cache=False
        ).logits
        together = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    first, second = len(rows[0][0]), len(rows[1][0])
    assert torch.allclose(together[0, :first], separate[0, :first], atol=1e-5)
    assert torch.allclose(together[0, first : first + second], separate[1, :second], atol=1e-5)


def test_batch_widths_are_rounded_up_with_padding_outside_the_loss(datamodule):
    dm = datamodule("data.pad_to_multiple_of=64")
    batch = next(iter(dm.train_dataloader()))
    longest = int(batch["attention_mask"].sum(1).max())
    assert batch["input_ids"].shape[1] == -(-longest // 64) * 64
    padding = batch["attention_mask"] == 0
    assert (batch["labels"][padding] == -100).all()
    packed = packed_collate(0, 64)([[dm.datasets["train"][0], dm.datasets["train"][1]]])
    assert packed["input_ids"].shape[1] % 64 == 0


def test_sliced_logits_give_the_loss_and_gradients_of_full_logits(monkeypatch):
    """The loss computed LOGIT_CHUNK rows at a time (recomputed in backward) is plain cross-entropy."""
    from domaintune.modules import causal_lm

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden, targets = torch.randn(11, 8, requires_grad=True), torch.randint(0, 50, (11,))
    expected = torch.nn.functional.cross_entropy(head(hidden), targets, reduction="sum")
    hidden_grad, head_grad = torch.autograd.grad(expected, (hidden, head.weight))
    monkeypatch.setattr(causal_lm, "LOGIT_CHUNK", 4)  # 3 slices, the last one short
    sliced = causal_lm._scored_losses(head, hidden, targets, config=None).sum()
    assert torch.allclose(sliced, expected, atol=1e-5)
    assert all(
        torch.allclose(a, b, atol=1e-5)
        for a, b in zip(torch.autograd.grad(sliced, (hidden, head.weight)), (hidden_grad, head_grad))
    )


@pytest.mark.parametrize(
    "model_type, extra",
    [
        ("llama", {}),
        ("gemma2", {"final_logit_softcapping": 5.0, "head_dim": 8}),  # soft-capped logits
        ("granite", {"logits_scaling": 4.0}),  # divided logits
        ("cohere", {"logit_scale": 0.5}),  # multiplied logits
    ],
)
def test_response_loss_is_the_models_own_loss_on_response_tokens(model_type, extra):
    from transformers import AutoConfig, AutoModelForCausalLM

    from domaintune.modules.causal_lm import response_nll

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        model_type,
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        **extra,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    ids = torch.randint(0, 64, (2, 9))
    labels = ids.clone()
    labels[:, :4] = -100  # the prompt
    with torch.no_grad():
        own = model(input_ids=ids, labels=labels, use_cache=False).loss
        ours, count = response_nll(model, {"input_ids": ids, "labels": labels})
    assert count == 10 and torch.allclose(ours, own, atol=1e-5)


def test_bfloat16_base_weights_train_a_float32_adapter(make_cfg):
    from safetensors.torch import load_file

    from domaintune.train import train

    registry.discover()
    # bfloat16 is emulated on a CPU without it: few, short rows (the vocabulary projection costs most)
    short = ["data.val_fraction=0.05", "data.test_fraction=0.05", "data.max_length=64"]
    cfg = make_cfg("task=support_replies", *TINY, *short, "model.dtype=bfloat16", "trainer.precision=bf16-mixed")
    assert {p.dtype for p in instantiate(cfg.model).load_model().parameters()} == {torch.bfloat16}
    assert train(cfg) is not None
    adapter = load_file(Path(cfg.paths.run_dir) / "adapter" / "adapter_model.safetensors")
    assert adapter and {t.dtype for t in adapter.values()} == {torch.float32}
    assert json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())["test"]["test/loss"] > 0


@pytest.mark.parametrize("peft", ["lora", "dora", "ia3", "none"])
def test_every_peft_method_fine_tunes_the_causal_lm(make_cfg, peft):
    from domaintune.train import train

    registry.discover()
    cfg = make_cfg("task=legal_summaries", *TINY, f"peft={peft}", "data.packing=true", "data.max_length=96")
    assert train(cfg) is not None
    metrics = json.loads((Path(cfg.paths.run_dir) / "metrics.json").read_text())
    assert set(metrics["test"]) == {"test/loss", "test/ppl", "test/rougeL"}
    assert {"val/loss", "val/ppl", "val/rougeL", "test/loss", "test/ppl", "test/rougeL"} <= set(metrics["baseline"])
    assert all({"val/loss", "val/ppl", "val/rougeL"} <= set(epoch) for epoch in metrics["history"])
    saved = Path(cfg.paths.run_dir) / (
        "model/model.safetensors" if peft == "none" else "adapter/adapter_model.safetensors"
    )
    assert saved.is_file()


def test_train_generate_and_export_a_support_reply_model(tiny_causal_run, copy_run, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, trained = tiny_causal_run
    assert "selected on validation: val/loss" in trained.stdout and "verdict on the test split: " in trained.stdout
    record = read_wandb(run)
    assert record["state"] == "finished" and "val/samples" in record["summary"]  # generations as a W&B table
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and set(samples[0]) == {"prompt", "reference", "fine_tuned", "base"}

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Where is my order #123?\nCan I return my lamp?\n")
    answered = cli("generate", f"run={run}", f"prompts={prompts}", "max_new_tokens=3")
    assert answered.returncode == 0, answered.stderr[-2000:]
    assert [json.loads(line)["prompt"] for line in answered.stdout.splitlines()] == [
        "Where is my order #123?",
        "Can I return my lamp?",
    ]
    labelled = cli("predict", f"run={run}", "text=hello")  # the kind serves generate, not predict
    assert labelled.returncode == 2 and "a causal_lm run does not predict; answer prompts with" in labelled.stderr

    run = copy_run(run)  # export writes into the run folder
    exported = cli("export", f"run={run}")
    assert exported.returncode == 0, exported.stderr[-2000:]
    merged = AutoModelForCausalLM.from_pretrained(run / "export").eval()
    card = (run / "export" / "README.md").read_text()
    assert "| test/loss |" in card and json.loads((run / "metrics.json").read_text())["data"]["fingerprint"] in card
    assert "the adapter is merged into these weights" in card
    loss = json.loads((run / "metrics.json").read_text())["verdict"]["metrics"]["loss"]
    assert f"| test/loss | {loss['fine_tuned']:.4f} | {loss['base']:.4f} |" in card  # the base model's figure too
    from domaintune.runs import load_run

    loaded = load_run(run)
    with_adapter, tokenizer = loaded.module.model, loaded.module.tokenizer
    assert isinstance(with_adapter, PeftModel)
    ids = tokenizer("Hello, where is my parcel?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, with_adapter(ids).logits, atol=1e-4)  # merging changed nothing
    again = cli("export", f"run={run}")
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_generative_tasks_sweep_like_any_task(tmp_path):
    result = cli(
        "train",
        "-m",
        "sweep=optuna",
        *IN_PROCESS,
        "task=legal_summaries",
        *TINY,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.params.trainer.max_epochs=int(interval(1,2))",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best trial" in result.stdout and "verdict on the test split:" in result.stdout


def test_evaluate_a_generative_run_against_its_base_model(tiny_causal_run, copy_run):
    run = copy_run(tiny_causal_run[0])
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["verdict"]["metrics"]) == ["loss", "rougeL"]
    result = cli("evaluate", f"run={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    (report,) = (run / "evaluations").glob("*/evaluation.json")
    evaluation = json.loads(report.read_text())
    # the same rows and weights
    assert evaluation["verdict"]["metrics"]["loss"] == metrics["verdict"]["metrics"]["loss"]
    samples = (report.parent / "samples.jsonl").read_text().splitlines()
    assert (
        evaluation["verdict"]["line"] in result.stdout
        and len(samples) == metrics["verdict"]["metrics"]["rougeL"]["rows"]
    )


@pytest.mark.slow
def test_causal_fine_tuning_lowers_loss_on_a_learnable_pattern(tmp_path):
    """Each prompt names a kind of thing and the answer is that kind's fixed sentence: the tiny
    random LM starts at chance, so validation and test loss must fall well below the base model's."""
    answers = {"fruit": "it grows on trees", "metal": "it is mined from rock", "bird": "it flies over the sea"}
    rows = [
        {"prompt": f"{phrase(i)} is a {kind}. What is it?", "response": answers[kind]}
        for i, kind in zip(range(120), itertools.cycle(answers))
    ]
    data = tmp_path / "pattern.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli(
        "train",
        "task=support_replies",
        "model=tiny_causal",
        "logger=none",
        f"data.path={data}",
        "peft=none",
        "module.lr=1e-2",
        "trainer.max_epochs=6",
        "module.generate_rows=0",
        "module.test_generate_rows=12",
        "module.max_new_tokens=8",
        env={"DOMAINTUNE_OUTPUT_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((the_run(tmp_path) / "metrics.json").read_text())
    losses = [epoch["val/loss"] for epoch in metrics["history"]]
    assert losses[-1] < losses[0] < metrics["baseline"]["val/loss"]
    assert losses[-1] <= metrics["baseline"]["val/loss"] * 2 / 3  # down by a third at least
    loss, rouge = metrics["verdict"]["metrics"]["loss"], metrics["verdict"]["metrics"]["rougeL"]
    assert loss["gain_ci95"][0] > 1.0 and metrics["verdict"]["line"].startswith("fine-tuning improved loss")
    assert rouge["fine_tuned"] > rouge["base"] + 0.2  # it answers with the kind's sentence; the base model cannot
