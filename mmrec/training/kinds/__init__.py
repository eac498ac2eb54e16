"""Run kinds: what `mmrec.training.train(kind, ...)` can train, one `RunKind` each.

The built-ins are ``"recommender"`` (`kinds.recommender`), ``"judge"``
(`kinds.judge`), ``"gan"`` and ``"vae"`` (`kinds.generators`), ``"text"``
(`kinds.text`) and ``"audio"`` (`kinds.audio`). A new kind is one `RunKind`
passed to `register_run_kind` (see `RunKind`'s example); its presets and
settings then work in ``--config`` files, and ``train(name, ...)`` gives it the
run folder, resuming, TensorBoard and the rest.
"""

from mmrec.training.kinds.base import (
    RUN_KINDS,
    RunKind,
    RunPlan,
    best_checkpoint,
    compile_with_learning_rate,
    fit_batch,
    get_run_kind,
    last_checkpoint,
    register_run_kind,
    run_kind_names,
    set_learning_rate,
    split_sizes,
)

# The built-in kinds register themselves on import, in this order (the quick start's).
# isort: off
from mmrec.training.kinds import recommender
from mmrec.training.kinds import judge
from mmrec.training.kinds import generators
from mmrec.training.kinds import text
from mmrec.training.kinds import audio

# isort: on
from mmrec.training.kinds.generators import generation_datasets
from mmrec.training.kinds.recommender import interaction_datasets

__all__ = [
    "RUN_KINDS",
    "RunKind",
    "RunPlan",
    "audio",
    "best_checkpoint",
    "compile_with_learning_rate",
    "fit_batch",
    "generation_datasets",
    "generators",
    "get_run_kind",
    "interaction_datasets",
    "judge",
    "last_checkpoint",
    "recommender",
    "register_run_kind",
    "run_kind_names",
    "set_learning_rate",
    "split_sizes",
    "text",
]
