"""Neural architecture search with a synthetic set as the proxy (DC, Zhao et al., ICLR 2021, §4;
reference §6).

Every architecture of a search space is trained twice: on the synthetic set S with the evaluation
protocol (:func:`datadistill.evaluation.evaluate_synthetic_set`) and on the real training set T
with a stated budget (the *real proxy*: ``real.epochs`` epochs over T, or over ``real.subset``
images per class of it; one network; SGD momentum 0.9, weight decay 5e-4, the architecture's
evaluation lr divided by 10 at half time, no augmentation, as the whole-data baseline). Both
rankings use the accuracy on a **validation split carved from the real training set** (default
5,000 images; the real proxy trains on the rest); the test set never ranks anything and its accuracy
is recorded once per trained network, for reporting. The question answered: does S rank the
architectures as T does, for a fraction of the search time? :func:`summarise` gives the Spearman
rank correlation (``scipy.stats.spearmanr``) over all candidates and over the top 5/10/20 by the real
ranking, whether the best architecture agrees, and the real rank of the synthetic-best.

The search space is a YAML file (``configs/nas/``)::

    family: convnet        # or mlp
    depth: [1, 2, 3, 4]    # convnet: depth, width, activation, norm, pooling; mlp: depth, width
    width: [32, 64, 128, 256]
    activation: [sigmoid, relu, leakyrelu]
    norm: [none, batchnorm, layernorm, instancenorm, groupnorm]
    pooling: [none, maxpooling, avgpooling]
    sample: 100            # optional: draw 100 of the grid's candidates …
    seed: 0                # … with this seed (numpy's default_rng; default 0)

The candidates are the cartesian product in the key order above (depth outermost); a key left out
keeps the builder's default. Candidate ``i`` (its position in the full grid, so sampling does not
change it) trains with the seed ``SeedSequence([seed, i])`` derives, in whichever worker process it
lands: results do not depend on ``workers`` or scheduling. Candidates run in parallel worker
processes (:func:`datadistill.experiments.workers.run_tasks`), one pool for both searches: every synthetic
candidate is submitted before the first real one. A search's wall time runs from its first candidate
starting to its last finishing (worker start-up, seconds of importing torch, is left out); at the
switch, up to ``workers`` − 1 synthetic candidates may still run beside the first real ones, each on
its own cores (``cores // workers`` threads per worker).

Caveat: a synthetic set is usually distilled from the whole training set, so the validation images
may have helped make S (an ``init: real`` set may even contain some); the synthetic side is then
ranked on images it has seen through S. The test accuracies in the table are free of this.

Outputs of :func:`run_nas` (written atomically, only after both searches finished): ``nas.json``
(space, settings, one row per candidate, summary, times), ``nas.csv`` (the rows), ``nas.md`` (a
table sorted by the real ranking, and the summary) and ``nas.png`` (synthetic against real
validation accuracy). Units: accuracies in percent, times in wall-clock seconds. Beside them,
``nas_run.json`` records each candidate's trainings as they finish: an interrupted search rerun into
the same folder with the same settings trains only the rest (other settings are refused).

Modules: :mod:`~datadistill.experiments.nas.space` (the search space),
:mod:`~datadistill.experiments.nas.settings` (:class:`NASSettings`, :class:`RealProxySettings`),
:mod:`~datadistill.experiments.nas.run` (the protocol, :func:`run_nas`),
:mod:`~datadistill.experiments.nas.summary` (rank agreement) and
:mod:`~datadistill.experiments.nas.report` (the files and the HTML report's section).
"""

from datadistill.experiments.nas.report import CSV_COLUMNS, render_csv, render_markdown, scatter_figure, write_outputs
from datadistill.experiments.nas.run import NASResult, candidate_seed, check_candidates, prepare_splits, run_nas
from datadistill.experiments.nas.settings import REAL_PROXY_RECIPE, NASSettings, RealProxySettings
from datadistill.experiments.nas.space import FAMILY_KEYS, Candidate, SearchSpace, load_search_space, parse_search_space
from datadistill.experiments.nas.summary import TOP_K, summarise

__all__ = ["CSV_COLUMNS", "FAMILY_KEYS", "REAL_PROXY_RECIPE", "TOP_K", "Candidate", "NASResult", "NASSettings",
           "RealProxySettings", "SearchSpace", "candidate_seed", "check_candidates", "load_search_space",
           "parse_search_space", "prepare_splits", "render_csv", "render_markdown", "run_nas", "scatter_figure",
           "summarise", "write_outputs"]
