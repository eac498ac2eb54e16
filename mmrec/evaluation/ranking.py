"""Full-catalogue ranking evaluation: Recall@K and NDCG@K, overall and on cold items.

Protocol (DESIGN.md, "Evaluation protocols"): for every example of a
leave-last-out split, score the *whole* catalogue, exclude every item the user
interacted with before the target (the example's history and the user's items
of the earlier splits, not only the last ``max_history`` items the record
keeps; see metrics.py), and find the rank of the held-out target. With one
relevant item per example, Recall@K is the fraction of targets ranked in the
top K and NDCG@K the mean of 1/log2(rank + 2) over those. Ties are resolved at
their midpoint (the expected rank under random tie-breaking), so a constant
scorer gets the chance result rather than a lucky or unlucky one. A metric
without examples (cold items of a split without cold targets) is `None`, which
JSON writes as ``null``.

The same code scores trained models and the baselines of `BASELINES`
(baselines.py; `mmrec evaluate --baselines`):

* ``popularity``: how often an item was a training target;
* ``ease``: EASE (Steck 2019), the closed-form item × item ridge regression,
  λ chosen on the validation split;
* ``itemknn``: cosine item-item similarity, k neighbours chosen on the
  validation split;
* where the dataset has the simulator's ground truth: ``oracle`` (the true
  affinity the interactions were sampled from) and ``posterior`` /
  ``posterior+true_pop`` (what the simulator's own model infers from a history).

The ID-only two-tower model (a `Recommender` without content) is trained by the
recommender run, not here.
"""

from __future__ import annotations

import numpy as np

from mmrec.evaluation.baselines import (
    EASEBaseline,
    ItemKNNBaseline,
    OracleBaseline,
    PopularityBaseline,
    PosteriorBaseline,
)
from mmrec.evaluation.metrics import ndcg_at_k, ranking_batches, recall_at_k, target_ranks

DEFAULT_KS = (10, 20, 50)


# name → (factory of data, needs the simulator's ground truth); `mmrec evaluate --baselines`.
BASELINES = {
    "popularity": (PopularityBaseline, False),
    "ease": (EASEBaseline, False),
    "itemknn": (ItemKNNBaseline, False),
    "oracle": (OracleBaseline, True),
    "posterior": (PosteriorBaseline, True),
    "posterior+count_pop": (lambda data: PosteriorBaseline(data, popularity="counts"), True),
    "posterior+true_pop": (lambda data: PosteriorBaseline(data, popularity="true"), True),
}


def make_baselines(data, names) -> dict:
    """The baselines called ``names`` for ``data`` (name → scorer), in that order.

    Baselines that need the simulator's ground truth are left out for datasets
    that have none (real catalogues). Raises `ValueError` for an unknown name.
    """
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"Expected baselines among {list(BASELINES)}. Received: {unknown}")
    return {
        name: BASELINES[name][0](data)
        for name in names
        if data.info.affinity or not BASELINES[name][1]
    }


class ModelScorer:
    """Adapts a `Recommender` (anything with `score_items(history)`) to the protocol.

    ``item_bias`` (float [num_items]) replaces the model's learned per-item bias:
    with the posterior's count popularity it measures the towers alone, the other
    half of `PosteriorBaseline(data, popularity=model_bias)` (where a model loses
    against the posterior: reading the history or estimating popularity).
    """

    def __init__(self, model, name: str | None = None, item_bias=None):
        self.model = model
        self.name = name or model.name
        # The catalogue is embedded once per evaluation, not once per batch.
        self.items = model.item_embeddings()
        self.shift = None
        if item_bias is not None:
            item_bias = np.asarray(item_bias, np.float32)
            if item_bias.shape != (model.num_items,):
                raise ValueError(
                    f"Expected item_bias of shape ({model.num_items},). "
                    f"Received: shape={item_bias.shape}"
                )
            own = model.item_bias
            self.shift = item_bias - (0.0 if own is None else np.asarray(own.numpy()))

    def __call__(self, batch) -> np.ndarray:
        scores = self.model.score_items(np.asarray(batch["history"]), item_embeddings=self.items)
        return scores if self.shift is None else scores + self.shift[None, :]


def evaluate_ranking(
    scorer, data, split: str = "test", ks=DEFAULT_KS, batch_size: int = 512, keep_ranks=False
):
    """Recall@K and NDCG@K over the whole catalogue, overall and on cold-item targets.

    Args:
        scorer: a `Recommender`, or a callable batch → scores [B, num_items]
            (the baselines of `BASELINES`).
        data: a dataset from `mmrec.data.load`.
    Returns:
        `{"overall": {"recall@10": …, "ndcg@10": …, …}, "cold": {…},
        "examples": n, "cold_examples": m}`; the cold segment holds only the
        examples whose target is a cold item, and its metrics are `None` when
        there are none. A scorer that chose hyperparameters on the validation
        split (`EASEBaseline`, `ItemKNNBaseline`) adds `"selected"`, e.g.
        `{"lam": 500.0}`. ``keep_ranks=True`` adds ``"ranks"``: each example's
        target rank (0 is first), for paired comparisons between models
        (`mmrec.evaluation.metrics.paired_recall_difference`).
    """
    if hasattr(scorer, "score_items"):
        scorer = ModelScorer(scorer)
    ranks, targets = [], []
    for batch in ranking_batches(data, split, batch_size):
        ranks.append(target_ranks(scorer(batch), batch["excluded"], batch["target"]))
        targets.append(batch["target"])
    ranks = np.concatenate(ranks) if ranks else np.zeros(0)
    targets = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    cold = np.isin(targets, np.asarray(data.info.cold_items, dtype=targets.dtype))

    def metrics(r):
        out = {}
        for k in ks:
            out[f"recall@{k}"] = recall_at_k(r, k)
            out[f"ndcg@{k}"] = ndcg_at_k(r, k)
        return out

    result = {
        "overall": metrics(ranks),
        "cold": metrics(ranks[cold]),
        "examples": int(len(ranks)),
        "cold_examples": int(cold.sum()),
    }
    if getattr(scorer, "selected", None):
        result["selected"] = dict(scorer.selected)
    if keep_ranks:
        result["ranks"] = ranks
    return result


def ranking_table(results: dict[str, dict], ks=DEFAULT_KS) -> str:
    """Models side by side: Recall@K / NDCG@K overall and, given cold targets, Recall@K on them.

    Undefined metrics (`None`) print as "-"; hyperparameters chosen on the
    validation split are listed under the table.
    """
    with_cold = any(r["cold_examples"] for r in results.values())
    columns = [f"R@{k}" for k in ks] + [f"N@{k}" for k in ks]
    columns += [f"cold R@{k}" for k in ks] if with_cold else []
    width = max(len(n) for n in results) + 2
    lines = ["model".ljust(width) + "".join(c.rjust(10) for c in columns)]
    for name, r in results.items():
        values = [r["overall"][f"recall@{k}"] for k in ks]
        values += [r["overall"][f"ndcg@{k}"] for k in ks]
        values += [r["cold"][f"recall@{k}"] for k in ks] if with_cold else []
        lines.append(name.ljust(width) + "".join(_cell(v) for v in values))
    any_result = next(iter(results.values()))
    lines.append(
        f"({any_result['examples']} examples, {any_result['cold_examples']} with a cold target; "
        "full-catalogue ranking, the user's earlier items excluded)"
    )
    selected = [
        f"{name}: " + ", ".join(f"{k}={'all' if v is None else f'{v:g}'}" for k, v in s.items())
        for name, r in results.items()
        if (s := r.get("selected"))
    ]
    if selected:
        lines.append(f"(chosen on the valid split: {'; '.join(selected)})")
    return "\n".join(lines)


def _cell(value) -> str:
    return f"{'-':>10}" if value is None else f"{value:10.4f}"
