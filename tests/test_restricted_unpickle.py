"""The restricted unpickler that reads CIFAR batches: damaged files are layout errors naming the file,
and pickles that would run code (os.system, builtins.eval) or build other classes are refused without
running anything."""

from __future__ import annotations

import builtins
import pickle

import numpy as np
import pytest

from datadistill.data import load_dataset
from datadistill.data.torchvision_sets import restricted_unpickle
from datadistill.errors import DatasetLayoutError
from broken_layouts import System, corrupt_length
from layout_fixtures import pickle_bytes, write_cifar10, write_pickle

pytestmark = pytest.mark.usefixtures("isolated_cache_home")


# --------------------------------------------------------------------------- damaged batches
def _corrupt_codec(folder):
    """A protocol-2 batch (Python 3 bytes go through _codecs.encode) whose codec name was damaged."""
    raw = pickle_bytes({"data": np.zeros((1, 3072), np.uint8), "labels": [0]}, protocol=2)
    assert b"latin1" in raw
    return raw.replace(b"latin1", b"lat!n1", 1)


@pytest.mark.parametrize("damage", [corrupt_length, _corrupt_codec], ids=["length-field", "codec-name"])
def test_cifar_damaged_batch_is_a_layout_error(tmp_path, damage):
    """A damaged file must give DatasetLayoutError naming it, not an OverflowError/LookupError traceback."""
    w = write_cifar10(tmp_path, per_batch=2, n_test=2)
    target = w["folder"] / "data_batch_4"
    target.write_bytes(damage(w["folder"]))
    with pytest.raises(DatasetLayoutError, match="data_batch_4"):
        restricted_unpickle(target)


# --------------------------------------------------------------------------- malicious pickles
class _Eval:
    """Unpickling calls builtins.eval(code)."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (builtins.eval, (self.code,))


def _payload(kind, marker):
    if kind == "os.system":
        return System(f"touch {marker}")
    return _Eval(f"open({str(marker)!r}, 'w').close()")


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, kind, where):
    w = write_cifar10(tmp_path / "root", per_batch=2, n_test=2)
    marker = tmp_path / "pwned"
    data = w["train"][:2]
    obj = ({"data": data, "labels": [0, 1], "batch_label": _payload(kind, marker)} if where == "data_batch_1"
           else {"label_names": _payload(kind, marker)})
    write_pickle(w["folder"] / where, obj)
    # the payload is live: plain pickle would run it
    control = tmp_path / "control"
    assert not control.exists()
    pickle.loads(pickle.dumps(_payload(kind, control), protocol=2))
    assert control.exists()
    with pytest.raises(DatasetLayoutError) as info:
        restricted_unpickle(w["folder"] / where)
    assert "refusing" in str(info.value) and str(w["folder"] / where) in str(info.value)
    assert ("system" in str(info.value)) == (kind == "os.system") and ("eval" in str(info.value)) == (kind != "os.system")
    with pytest.raises(DatasetLayoutError):
        load_dataset("cifar10", tmp_path / "root")
    assert not marker.exists()


def test_restricted_unpickle_refuses_other_classes(tmp_path):
    import collections

    path = tmp_path / "batch"
    write_pickle(path, {"data": collections.OrderedDict(a=1)})
    with pytest.raises(DatasetLayoutError, match="collections.OrderedDict"):
        restricted_unpickle(path)
