"""Files: the synthetic-set format, PNG grids, atomic writes."""

from datadistill.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from datadistill.io.grid import save_grid
from datadistill.io.synthetic_set import SyntheticSet, load_synthetic_set, save_synthetic_set

__all__ = ["SyntheticSet", "atomic_write", "atomic_write_bytes", "atomic_write_text", "load_synthetic_set",
           "save_grid", "save_synthetic_set"]
