"""How much of the oracle a history can reach: the posterior references, with popularity.

    python benchmarks/recommender_references.py --data tf_records/shapes
    python benchmarks/recommender_references.py --data tf_records/fashion

No training. Scores with `mmrec.evaluation.evaluate_ranking` (test split):
popularity, the oracle, `PosteriorBaseline` from the history alone, the same
plus each item's popularity *estimated from training counts* (the residual of
log(count + 1) after the mean of the items with the same preference labels,
times ``--weight``; cold items get 0), and the same plus the items' true
popularity. Also prints how well the count estimate tracks the true popularity
(correlation over warm items). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from _common import machine  # noqa: E402

import mmrec  # noqa: E402
from mmrec.evaluation.baselines import residual_popularity  # noqa: E402
from mmrec.evaluation.ranking import (  # noqa: E402
    OracleBaseline,
    PopularityBaseline,
    PosteriorBaseline,
    evaluate_ranking,
    ranking_table,
)


def count_correlation(data, residual):
    """How well the count estimate tracks the true log popularity (warm items)."""
    cold = np.zeros(data.info.num_items, bool)
    cold[data.info.cold_items] = True
    truth = np.log(data.catalogue().popularity)
    return float(np.corrcoef(residual[~cold], truth[~cold])[0, 1])


class _PlusBias:
    def __init__(self, scorer, bias):
        self.scorer, self.bias = scorer, bias

    def __call__(self, batch):
        return self.scorer(batch) + self.bias[None, :]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--weight", type=float, default=0.5, help="of the count estimate")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    data = mmrec.data.load(args.data)
    out = args.out or f"benchmarks/results/recommender_references_{data.info.name}.json"
    os.makedirs(os.path.dirname(out), exist_ok=True)

    popularity = PopularityBaseline(data)
    residual = residual_popularity(data, popularity.scores)
    correlation = count_correlation(data, residual)
    posterior = PosteriorBaseline(data)
    scorers = {
        "popularity": popularity,
        "oracle": OracleBaseline(data),
        "posterior": posterior,
        "posterior+count_pop": _PlusBias(posterior, args.weight * residual),
        "posterior+true_pop": PosteriorBaseline(data, popularity="true"),
    }
    results = {name: evaluate_ranking(s, data, "test") for name, s in scorers.items()}
    print(f"\n{data.info.name}: test split")
    print(ranking_table(results))
    oracle = results["oracle"]["overall"]["recall@20"]
    for name, r in results.items():
        print(f"{name:22s} R@20 / oracle = {r['overall']['recall@20'] / oracle:.2f}")
    print(f"count estimate vs true log popularity (warm items): correlation {correlation:.2f}")
    with open(out, "w") as f:
        payload = {"machine": machine(), "args": vars(args), "results": results}
        payload["count_popularity_correlation"] = correlation
        json.dump(payload, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
