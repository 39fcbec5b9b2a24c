"""Every registered kind through the same commands, with one common tester (`helpers.check_kind`),
as peft tests every tuner: train (a shared fixture's finished run), evaluate, and each of
predict, generate and export as the kind's registration declares them. The test-defined kind in
test_new_kind.py goes through the same tester."""

import pytest

from helpers import check_kind, cli

# A finished tiny run of each built-in kind (conftest's shared fixtures)
RUNS = {
    "classification": "tiny_run",
    "multi_label_classification": "multi_label_run",
    "causal_lm": "tiny_causal_run",
    "token_classification": "token_run",
}


def test_every_built_in_kind_has_a_run_in_the_common_tester():
    import domaintune.modules.causal_lm  # noqa: F401  (importing a module class registers its kind)
    import domaintune.modules.multi_label  # noqa: F401
    import domaintune.modules.token_classification  # noqa: F401
    from domaintune import kinds

    built_in = {name for name, kind in kinds.registered().items() if kind.module.__module__.startswith("domaintune.")}
    assert built_in == set(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_registered_kind_serves_what_it_declares_and_refuses_the_rest(name, request, copy_run):
    run = copy_run(request.getfixturevalue(RUNS[name])[0])
    assert check_kind(run, cli) == name
