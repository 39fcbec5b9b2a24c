import itertools

import pytest
from hydra.utils import instantiate

from domaintune.config import check_group_choices, group_options
from domaintune.errors import UserError

TASKS = group_options("task")
GENERATIVE = {"support_replies", "legal_summaries", "marketing_copy"}
CAUSAL_MODELS = {"smollm2_135m", "tiny_causal"}
MODELS = [m for m in group_options("model") if m not in ("hf", "hf_causal")]  # these need a name_or_path
# each task with every model of its kind: encoders for classification, causal LMs for generation
COMBINATIONS = [
    (t, m, p)
    for t, m, p in itertools.product(TASKS, MODELS, group_options("peft"))
    if (t in GENERATIVE) == (m in CAUSAL_MODELS)
]
PEFTS = group_options("peft")
TRAINERS = group_options("trainer")
LOGGERS = group_options("logger")


def test_groups_offer_what_users_expect():
    assert {"legal", "support", "marketing"} <= set(TASKS)
    assert {"lora", "ia3", "none"} <= set(PEFTS)
    assert {"cpu", "gpu", "ddp", "debug"} <= set(TRAINERS)
    assert {"wandb", "csv", "none"} <= set(LOGGERS)
    assert {"minilm", "hf", "tiny"} <= set(group_options("model"))


def test_generative_and_classification_tasks_are_all_covered():
    assert GENERATIVE < set(TASKS) and {"support", "legal", "marketing"} < set(TASKS)
    assert len(COMBINATIONS) == len(TASKS) * 2 * len(PEFTS)


@pytest.mark.parametrize("task,model,peft", COMBINATIONS)
def test_every_task_model_peft_combination_composes(make_cfg, task, model, peft):
    cfg = make_cfg(f"task={task}", f"model={model}", f"peft={peft}")
    assert cfg.task_name == task
    assert cfg.data._target_.startswith("domaintune_plugins.")
    if task in GENERATIVE:
        assert cfg.module._target_.endswith("CausalLMModule") and cfg.model._target_.endswith("CausalBackbone")
    elif (
        "pooling" in cfg.module
    ):  # a sentence classifier pools as its model was pre-trained; a token head reads every token
        assert cfg.module.pooling == cfg.model.pooling
    assert (cfg.peft is None) == (peft == "none")
    for key in ("best_weights", "early_stopping"):
        assert cfg.callbacks[key].monitor == cfg.optimized_metric
        assert cfg.callbacks[key].mode == cfg.mode


@pytest.mark.parametrize("trainer,logger", list(itertools.product(TRAINERS, LOGGERS)))
def test_every_trainer_logger_combination_composes(make_cfg, trainer, logger):
    cfg = make_cfg(f"trainer={trainer}", f"logger={logger}")
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    assert (cfg.logger is None) == (logger == "none")


def test_experiments_and_debug_configs_compose(make_cfg):
    for name in group_options("experiment"):
        assert make_cfg(f"experiment={name}").task_name
    for name in group_options("debug"):
        assert make_cfg(f"debug={name}").logger is None


def test_legal_optimizes_macro_f1(make_cfg):
    assert make_cfg("task=legal").optimized_metric == "val/macro_f1"


def test_peft_configs_instantiate(make_cfg):
    assert type(instantiate(make_cfg("peft=lora").peft)).__name__ == "LoraConfig"
    assert type(instantiate(make_cfg("peft=ia3").peft)).__name__ == "IA3Config"


def test_minilm_resolves_to_the_packaged_weights(make_cfg):
    from pathlib import Path

    assert (Path(make_cfg().model.name_or_path) / "model.safetensors").is_file()


def test_unknown_group_choice_is_one_line_with_options():
    with pytest.raises(
        UserError,
        match=r"unknown task 'nope'; available: legal, legal_summaries, marketing, marketing_copy, "
        r"medical, support, support_replies",
    ):
        check_group_choices(["task=nope"])
    with pytest.raises(UserError, match=r"unknown model 'bert9'"):
        check_group_choices(["task=legal,support", "model=tiny,bert9"])
    check_group_choices(["task=legal,support", "trainer.max_epochs=3", "peft=null"])


def test_a_projects_conf_extends_and_overrides_the_packaged_configs(make_cfg, tmp_path, monkeypatch):
    """The user's ./conf comes first on the search path: its own task composes, and its file of
    the same name as a built-in one wins."""
    (tmp_path / "conf" / "task").mkdir(parents=True)
    (tmp_path / "conf" / "task" / "support.yaml").write_text(
        "# @package _global_\ntask_name: my_support\ndata:\n  _target_: domaintune_plugins.support.SupportDataModule\n"
    )
    (tmp_path / "conf" / "task" / "claims.yaml").write_text(
        "# @package _global_\ntask_name: claims\ndata:\n  _target_: domaintune_plugins.legal.LegalDataModule\n"
    )
    monkeypatch.chdir(tmp_path)
    assert make_cfg("task=support").task_name == "my_support"
    assert make_cfg("task=claims").task_name == "claims"
    assert make_cfg("task=legal").task_name == "legal"
    assert {"claims", "legal", "support"} <= set(group_options("task"))


def test_a_model_package_that_is_not_installed_names_its_pip_install():
    from domaintune.config import package_dir

    with pytest.raises(UserError, match=r"package 'llm_nosuch' is not installed; pip install llm-nosuch, or choose"):
        package_dir("llm_nosuch")
