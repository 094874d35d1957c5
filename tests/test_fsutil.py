"""datadistill.fsutil: the output-folder check (the atomic writes are tested in test_io.py through the
names datadistill.io re-exports)."""

from pathlib import Path

import pytest

import datadistill.io
from datadistill import fsutil
from datadistill.errors import ConfigError
from datadistill.fsutil import check_output_folder


def test_missing_and_existing_folders_pass_and_nothing_is_created(tmp_path):
    missing = tmp_path / "a" / "b"
    assert check_output_folder(str(missing)) == missing
    assert isinstance(check_output_folder(missing), Path)
    assert not missing.exists() and not (tmp_path / "a").exists()
    assert check_output_folder(tmp_path) == tmp_path


def test_a_file_is_refused_with_its_path_and_name(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match=f"^output path {target} exists and is not a folder$"):
        check_output_folder(target)
    with pytest.raises(ConfigError, match=f"^expert folder {target} exists and is not a folder$"):
        check_output_folder(target, "expert folder")


def test_io_reexports_the_atomic_writes():
    for name in ("atomic_write", "atomic_write_bytes", "atomic_write_text"):
        assert getattr(datadistill.io, name) is getattr(fsutil, name)
