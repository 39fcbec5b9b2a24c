import pytest

from domaintune import registry
from domaintune.errors import PluginError

PLUGIN = """
from domaintune.data.text_classification import TextClassificationDataModule

class {cls}(TextClassificationDataModule):
    pass

DATAMODULES = {{"{name}": {cls}}}
"""


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    """An extra plugin folder on DOMAINTUNE_PLUGINS, with the discovery cache cleared around the test."""
    root = tmp_path / "extra_plugins"
    root.mkdir()
    monkeypatch.setenv("DOMAINTUNE_PLUGINS", str(root))
    registry.discover.cache_clear()
    yield root
    registry.discover.cache_clear()


def add_plugin(root, folder, name, body=None):
    (root / folder).mkdir()
    (root / folder / "__init__.py").write_text(
        body if body is not None else PLUGIN.format(cls=f"{folder.title()}DM", name=name)
    )


def test_builtin_and_domain_plugins_are_found_with_their_source():
    found = registry.discover()
    module = found[("module", "sequence_classification")]
    assert module.source.startswith("entry point domaintune.modules.sequence_classification")
    assert module.target == "domaintune.modules.sequence_classification.SequenceClassificationModule"
    assert found[("datamodule", "text_classification")].source.startswith("entry point")
    for domain in ("legal", "support", "marketing"):
        plugin = found[("datamodule", domain)]
        assert plugin.source.endswith(f"plugins/{domain}")
        assert plugin.target.startswith(f"domaintune_plugins.{domain}.")


def test_local_plugin_folder_registers_by_name(plugin_root):
    add_plugin(plugin_root, "insurance_claims", "insurance")
    plugin = registry.get("datamodule", "insurance")
    assert plugin.obj.__name__ == "Insurance_ClaimsDM"
    assert str(plugin_root / "insurance_claims") in plugin.source


def test_duplicate_names_name_both_sources(plugin_root):
    add_plugin(plugin_root, "other_support", "support")
    with pytest.raises(
        PluginError, match=r"'support' is registered twice: by plugin folder .* and by plugin folder"
    ) as error:
        registry.discover()
    assert "extra_plugins/other_support" in str(error.value) and str(registry.builtin_dir() / "support") in str(
        error.value
    )


def test_plugin_that_fails_to_import_is_named(plugin_root):
    add_plugin(plugin_root, "broken", "broken", body="import not_a_real_module\n")
    with pytest.raises(PluginError, match=r"plugin folder .*broken failed to import: ModuleNotFoundError"):
        registry.discover()


def test_plugin_that_is_not_a_datamodule_is_rejected(plugin_root):
    add_plugin(plugin_root, "wrong", "wrong", body="DATAMODULES = {'wrong': dict}\n")
    with pytest.raises(PluginError, match="not a TaskDataModule subclass"):
        registry.discover()


def test_bad_plugin_name_is_rejected(plugin_root):
    add_plugin(plugin_root, "caps", "Bad-Name")
    with pytest.raises(PluginError, match="'Bad-Name'.*lower-case"):
        registry.discover()


def test_unknown_name_lists_available():
    with pytest.raises(
        PluginError,
        match=r"unknown datamodule plugin 'nope'; available: .*legal, legal_summaries, marketing, marketing_copy, "
        r"medical, support, support_replies",
    ):
        registry.get("datamodule", "nope")


def test_unimportable_target_lists_registered():
    with pytest.raises(
        PluginError,
        match=r"data\._target_ 'plugins\.nope\.X' cannot be imported.*support \(domaintune_plugins\.support",
    ):
        registry.check_target("datamodule", "plugins.nope.X", "data")
