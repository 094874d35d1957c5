"""Files: the synthetic-set format, saved models, imports from other toolkits, exports to and imports from
image folders, NumPy and Hugging Face datasets, PNG grids; re-exports the
atomic writes of :mod:`datadistill.fsutil`."""

from datadistill.fsutil import atomic_write, atomic_write_bytes, atomic_write_text
from datadistill.io.export import EXPORT_FORMATS, export_synthetic_set
from datadistill.io.grid import save_grid
from datadistill.io.import_sets import import_exported
from datadistill.io.importers import import_mtt, import_reference, import_vico
from datadistill.io.model_file import load_model, save_model
from datadistill.io.synthetic_set import SyntheticSet, load_synthetic_set, save_synthetic_set, synthetic_set_metadata

__all__ = ["EXPORT_FORMATS", "SyntheticSet", "atomic_write", "atomic_write_bytes", "atomic_write_text",
           "export_synthetic_set", "import_exported", "import_mtt",
           "import_reference", "import_vico", "load_model", "load_synthetic_set", "save_grid", "save_model",
           "save_synthetic_set", "synthetic_set_metadata"]
