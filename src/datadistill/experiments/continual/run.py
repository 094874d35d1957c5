"""``datadistill continual``: :func:`run_continual` runs every (memory method, class order) pair of a
:class:`~datadistill.experiments.continual.ContinualSettings`, in worker processes when asked, and
keeps the output folder current after every finished pair.

Resume: the output folder's ``continual.json`` is the run's record
(:class:`datadistill.record.RunRecord` on the experiment's own layout): a rerun with the
same settings, but those in :data:`RESUME_INDEPENDENT`, computes only the pairs not finished there
and keeps the others as written (seconds included).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from datadistill.data import SplitDataset, check_dataset_name, load_dataset
from datadistill.errors import ConfigError
from datadistill.experiments.continual.outputs import write_outputs
from datadistill.experiments.continual.protocol import check_against_data, class_orders, memory_run
from datadistill.experiments.continual.results import FORMAT, FORMAT_VERSION, ContinualResult, StepRecord
from datadistill.experiments.continual.settings import ContinualSettings
from datadistill.distributed import broadcast_object, world
from datadistill.record import RunRecord

Progress = Callable[[str], None]
StepProgress = Callable[[StepRecord, int, int], None]  # (a finished step, steps finished, steps in all)
log = logging.getLogger("datadistill")

#: settings a resumed folder may differ in: how the data is read and where, the worker count, and which
#: pairs are asked for (orders and methods may be added; each method's own settings are compared)
RESUME_INDEPENDENT = ("out", "workers", "num_workers", "data_root", "stream", "orders", "memory_methods",
                      "method_settings")


def resume_record(result: ContinualResult, out_dir: Path) -> RunRecord:
    """The record of ``out_dir/continual.json`` for this run; its :meth:`~RunRecord.resume` returns the
    (order, method) pairs whose every step is in the file, with their :class:`StepRecord` objects.

    A folder is resumed when its file was written with the same settings, except those in
    :data:`RESUME_INDEPENDENT`: this run may add class orders and memory methods (a method in both must
    have the same condensation config, and the class orders must agree), but may not drop any that the
    folder holds.

    ``resume()`` raises ConfigError when the file is not a continual.json of this format, was written
    with other settings (naming them), or holds methods or orders this run would drop. Nothing runs
    then and the folder is left as it is.
    """
    fresh = result.as_dict()
    path = out_dir / "continual.json"

    def other_configs(old: dict[str, Any]) -> list[str]:
        found = []
        old_methods = old.get("methods", {})
        for m in sorted(set(old_methods) & set(fresh["methods"])):
            if old_methods[m].get("config") != fresh["methods"][m]["config"]:
                found.append(f"the condensation config of {m!r}")
        old_orders = old.get("class_orders", [])
        if old_orders[:len(fresh["class_orders"])] != fresh["class_orders"][:len(old_orders)]:
            found.append("class_orders")
        return found

    def finished_pairs(old: dict[str, Any]) -> dict[tuple[int, str], list[StepRecord]]:
        s = result.settings
        old_methods = old.get("methods", {})
        old_orders = old.get("class_orders", [])
        dropped = [m for m in old_methods if m not in s.memory_methods]
        if dropped or len(old_orders) > s.orders:
            raise ConfigError(f"{path} holds results this run would drop (methods {dropped or 'none'}, "
                              f"{len(old_orders)} class orders against orders = {s.orders} here): "
                              "include them, or choose another --out")
        names = {f.name for f in fields(StepRecord)}
        done = {}
        for method, entry in old_methods.items():
            for o in entry.get("orders", []):
                steps = o.get("steps", [])
                if len(steps) == s.steps:
                    done[(o["order"], method)] = [StepRecord(**{k: v for k, v in r.items() if k in names})
                                                  for r in steps]
        return done

    return RunRecord(path, fresh["settings"], format=FORMAT, version=FORMAT_VERSION, ignore=RESUME_INDEPENDENT,
                     what="a continual run", units_of=finished_pairs, extra_differences=other_configs)


def run_continual(settings: ContinualSettings | str | os.PathLike | Mapping[str, Any] | None = None, *,
                  data: SplitDataset | None = None, progress: Progress | None = None,
                  on_step: StepProgress | None = None) -> ContinualResult:
    """Class-incremental continual learning with condensed memories (``datadistill continual``):
    see :mod:`datadistill.experiments.continual` for the protocol.

    Args:
        settings: the :class:`ContinualSettings` (the CLI builds them from ``--config`` and its flags
            with :meth:`ContinualSettings.build`); a YAML file or a mapping of its fields is built the
            same way, None means the defaults. ``settings.out`` is the output folder (None: nothing
            is written).
        data: an already loaded dataset (its spec names it: ``settings.dataset`` becomes its name;
            ``data_root``, ``image_size``, ``stream`` and ``num_workers`` are then unused).
        progress: called with one line of text on resuming, and one per step of each (method, order)
            pair as the pair finishes.
        on_step: called ``(record, steps finished, steps in all)`` for every step finished in this
            run (the counts include the resumed pairs' steps): as each step ends when the pairs run in
            this process (``workers`` ≤ 1), else as each pair ends.

    With ``workers`` ≥ 2, call it under an ``if __name__ == "__main__":`` guard (worker processes are
    spawned).

    Returns:
        The :class:`ContinualResult` (records, summary, verdict, output folder).

    Raises:
        ConfigError: an invalid setting — steps not dividing the class count, memory IPC < 1 or above
            the smallest class, orders < 1, a bad method setting, an output path that is a file —
            naming the value and what is accepted; a folder that cannot be resumed (see
            :func:`resume_record`); UnknownNameError (a ConfigError) for an unknown dataset, method or
            model (the message lists the registered names). Nothing is written then, and nothing runs.
        DatasetNotFoundError: the dataset is not on disk.
        NonFiniteLossError: a condensation diverged (the files hold the orders finished before).
    """
    if not isinstance(settings, ContinualSettings):
        settings = ContinualSettings.build(settings)
    if data is not None and settings.dataset != data.spec.name:
        settings = replace(settings, dataset=data.spec.name)
    out_dir = Path(settings.out) if settings.out else None
    from datadistill.runtime import select_device

    dev = select_device(settings.device)
    if data is None:
        check_dataset_name(settings.dataset)
        data = load_dataset(settings.dataset, settings.data_root, image_size=settings.image_size,
                            stream=settings.stream, num_workers=settings.num_workers)
    check_against_data(settings, data)
    spec = data.spec
    result = ContinualResult(settings, spec, class_orders(spec.num_classes, settings.orders), out=out_dir)
    def notify(line: str, logger: logging.Logger = log) -> None:
        logger.info("%s", line)
        if progress is not None:
            progress(line)

    pairs = [(k, method) for k in range(settings.orders) for method in settings.memory_methods]
    done = broadcast_object(resume_record(result, out_dir).resume() if out_dir is not None else {})  # rank 0's
    if done:
        notify(f"resuming {out_dir}: {len(done)} of {len(pairs)} (method, order) pairs already finished",
               logging.getLogger("datadistill.notice"))
    todo = [pair for pair in pairs if pair not in done]
    counted = {"steps": sum(len(records) for records in done.values()), "reported": set()}

    def step_done(r: StepRecord) -> None:  # once per step, as it ends (in this process) or with its pair
        if on_step is not None and (r.method, r.order, r.step) not in counted["reported"]:
            counted["reported"].add((r.method, r.order, r.step))
            counted["steps"] += 1
            on_step(r, counted["steps"], len(pairs) * settings.steps)

    in_process = {"on_step": step_done} if on_step is not None and (settings.workers <= 1 or len(todo) <= 1) else {}
    tasks = [(memory_run, {"settings": settings, "data": data, "method": method, "order_index": k,
                           "order": result.class_orders[k], "device": str(dev), **in_process}) for k, method in todo]
    finished = dict(done)

    def ordered() -> list[StepRecord]:  # the finished pairs' records in (order, method, step) order
        return [r for pair in pairs if pair in finished for r in finished[pair]]

    def collect(i: int, records: list[StepRecord]) -> None:
        finished[todo[i]] = records
        for r in records:
            notify(f"{r.method} order {r.order} step {r.step}/{settings.steps}: {len(r.seen_classes)} classes seen, "
                   f"memory {r.memory_images} images, accuracy {r.accuracy_mean:.2f} ± {r.accuracy_std:.2f} % "
                   f"(condense {r.condense_seconds:.1f} s, train {r.train_seconds:.1f} s)")
            step_done(r)
        result.records = ordered()
        if out_dir is not None:
            write_outputs(result.as_dict(), out_dir)

    from datadistill.experiments.workers import run_tasks

    # under torchrun the ranks share the pairs: ``collect`` runs on rank 0, every rank gets them all
    finished.update(zip(todo, run_tasks(tasks, workers=settings.workers, progress=collect)))
    result.records = ordered()
    if out_dir is not None and not todo and world().is_main:
        write_outputs(result.as_dict(), out_dir)
    return result


__all__ = ["RESUME_INDEPENDENT", "resume_record", "run_continual"]
