"""The layer rules of issue #18, written as import-linter contracts in pyproject.toml
([tool.importlinter]), checked here so that the suite fails when a module imports from a layer above it.

import-linter analyses the ``datadistill`` package that the tests import (grimp finds it through
``importlib.util.find_spec``, which answers from ``sys.modules``), so the code under test is the code
linted, whether it comes from the editable install or from ``PYTHONPATH``.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

import datadistill

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_import_linter_contracts_are_kept(capfd):
    # importlinter.api configures import-linter (config readers, graph builder) on import.
    # use_cases.lint_imports is what importlinter.cli.lint_imports runs; the cli wrapper is not called
    # because it also re-configures logging for the whole process (logging.config.dictConfig, which
    # disables every logger already created, e.g. datadistill's) and prepends the cwd to sys.path.
    import importlinter.api  # noqa: F401
    from importlinter.application.use_cases import lint_imports

    passed = lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True, is_debug_mode=True)
    report = capfd.readouterr().out
    assert passed, f"import-linter contracts broken (pyproject.toml [tool.importlinter]):\n{report}"
    assert "0 broken" in report


def test_contracts_are_read_from_pyproject():
    import importlinter.api

    options = importlinter.api.read_configuration(str(PYPROJECT))
    assert options["session_options"]["root_packages"] == ["datadistill"]
    assert {c["id"] for c in options["contracts_options"]} >= {"layers", "data-not-io", "no-package-top",
                                                               "experiments-independent"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    assert Path(datadistill.__file__).name == "__init__.py"
    return grimp.build_graph("datadistill", cache_dir=None)


@pytest.mark.parametrize("module, allowed", [("datadistill._version", set()),
                                             ("datadistill.fsutil", {"datadistill.errors"})])
def test_leaves_import_nothing_from_the_package(graph, module, allowed):
    imported = {m for m in graph.find_modules_directly_imported_by(module) if m.split(".")[0] == "datadistill"}
    assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"


def test_errors_imports_nothing_from_the_package(graph):
    assert not graph.find_modules_directly_imported_by("datadistill.errors")


def test_version_is_re_exported_by_the_package_top():
    from datadistill._version import __version__

    assert datadistill.__version__ == __version__
