"""Recommendation quality: the multimodal recommender against ID-only, EASE, popularity and oracle.

    python benchmarks/recommender_quality.py --data tf_records/shapes
    python benchmarks/recommender_quality.py --data tf_records/fashion
    python benchmarks/recommender_quality.py --data tf_records/fashion --modalities text \
        --item-id-embedding        # does the text tower earn its cost over ID-only?

Trains the multimodal two-tower model (every modality the dataset has) and the
ID-only two-tower model with `model.fit`, then scores both and the baselines with
the same full-catalogue protocol (`mmrec.evaluation.evaluate_ranking`) on the test
split: popularity, EASE and item-kNN (their hyperparameter chosen on the valid
split: the baselines users compare against first), the oracle (true affinity),
and two references that show how much of the oracle a history can reach — the
Bayes posterior over the user's favourites given the history (``posterior``), and
the same plus the items' true popularity (``posterior+true_pop``), which no
trained model is given. Two more rows say where the multimodal model loses against
``posterior+count_pop``, one half swapped at a time: its towers with the
reference's count popularity instead of its learned item bias (reading the
history and the content), and the posterior with the model's item bias
(estimating popularity). Prints the table, writes JSON and saves the trained
models (.keras) next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
from _common import machine  # noqa: E402

import mmrec  # noqa: E402
from mmrec.evaluation.baselines import PosteriorBaseline  # noqa: E402
from mmrec.evaluation.metrics import paired_recall_difference  # noqa: E402
from mmrec.evaluation.ranking import (  # noqa: E402
    ModelScorer,
    evaluate_ranking,
    make_baselines,
    ranking_table,
)
from mmrec.models.recommender import Recommender  # noqa: E402

# Small encoders (the base preset's).
ENCODERS = {
    "image": {"filters": [16, 32, 64]},
    "text": {"hidden_dim": 32, "sequence_length": 24},
    "audio": {"filters": [8, 16, 32], "num_mel_bins": 32},
}


def optimizer_for(data, epochs, batch_size, learning_rate, schedule, weight_decay):
    """Adam (AdamW with ``weight_decay``) at a constant or a cosine-decayed learning rate."""
    if schedule == "cosine":
        steps = epochs * -(-data.info.splits["train"] // batch_size)
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    if weight_decay:
        return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate)


def train(
    data,
    name,
    epochs,
    batch_size,
    learning_rate,
    history_content=True,
    patience=None,
    patience_from=4,
    lr_schedule="constant",
    weight_decay=0.0,
    seed=0,
    **kwargs,
):
    keras.utils.set_random_seed(seed)
    model = Recommender.from_dataset(data, name=name, **kwargs)
    # Early stopping on the validation loss, keeping the best epoch's weights (the item
    # table is re-embedded from them at the end of fit). Not in the first epochs: the
    # validation loss can sit on a plateau there before it falls (seen on shapes).
    callbacks = []
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=patience,
                start_from_epoch=patience_from,
                restore_best_weights=True,
                verbose=1,
            )
        )
    model.compile(optimizer_for(data, epochs, batch_size, learning_rate, lr_schedule, weight_decay))
    start = time.perf_counter()
    history_content = history_content if model.modalities else False
    model.fit(
        data.interactions(
            "train",
            batch_size=batch_size,
            content=model.modalities,
            history_content=history_content,
            cache=True,
            seed=seed,
        ),
        validation_data=data.interactions(
            "valid", batch_size=batch_size, content=model.modalities, cache=True
        ),
        epochs=epochs,
        callbacks=callbacks,
        verbose=2,
    )
    return model, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument(
        "--lr-schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="cosine: decay the learning rate to 0 over --epochs",
    )
    parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW's (0: Adam)")
    parser.add_argument(
        "--item-bias-l2", type=float, default=1e-4, help="L2 penalty on the item biases"
    )
    parser.add_argument("--embedding-dim", type=int, default=32)
    parser.add_argument("--fusion", default="concat")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--user-pooling", default="mean", choices=("mean", "transformer"))
    parser.add_argument(
        "--item-bias",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a learned per-item bias in both two-tower models",
    )
    parser.add_argument(
        "--item-id-embedding",
        action="store_true",
        help="multimodal model: add an item-id embedding to the content (hybrid)",
    )
    parser.add_argument(
        "--modalities",
        default=None,
        help="comma-separated modalities of the multimodal model (default: all the dataset has)",
    )
    parser.add_argument(
        "--history-content",
        type=int,
        default=None,
        help="history items through the item tower per batch (default: all; 0: the table)",
    )
    parser.add_argument(
        "--refresh-every", type=int, default=None, help="item-table refresh, in steps"
    )
    parser.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop when the validation loss has not improved for PATIENCE epochs, keep the best",
    )
    parser.add_argument(
        "--early-stopping-from",
        type=int,
        default=4,
        metavar="EPOCH",
        help="early stopping watches the validation loss from this epoch on",
    )
    parser.add_argument("--seed", type=int, default=0, help="initialisation and shuffling")
    parser.add_argument("--skip-id-only", action="store_true", help="train the multimodal only")
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    data = mmrec.data.load(args.data)
    out = args.out or f"benchmarks/results/recommender_quality_{data.info.name}.json"
    os.makedirs(os.path.dirname(out), exist_ok=True)

    common = dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        embedding_dim=args.embedding_dim,
        temperature=args.temperature,
        user_pooling=args.user_pooling,
        patience=args.early_stopping,
        patience_from=args.early_stopping_from,
        item_bias=args.item_bias,
        item_bias_l2=args.item_bias_l2,
        lr_schedule=args.lr_schedule,
        weight_decay=args.weight_decay,
        seed=args.seed,
    )
    modalities = tuple(args.modalities.split(",")) if args.modalities else data.info.modalities
    multimodal, multimodal_seconds = train(
        data,
        "multimodal",
        modalities=modalities,
        fusion=args.fusion,
        encoder_config={m: ENCODERS[m] for m in modalities},
        item_id_embedding=args.item_id_embedding,
        refresh_every=args.refresh_every,
        history_content=True if args.history_content is None else (args.history_content or False),
        **common,
    )
    # The oracle and the posterior references need the simulator's ground truth; they
    # are left out for real catalogues (see PosteriorBaseline for what they show).
    names = ["popularity", "ease", "itemknn", "oracle", "posterior", "posterior+count_pop"]
    names += ["posterior+true_pop"]
    scorers = make_baselines(data, names)
    id_only, id_seconds = None, 0.0
    if not args.skip_id_only:
        id_only, id_seconds = train(
            data, "id_only", modalities=(), item_id_embedding=True, **common
        )
        scorers["id_only"] = id_only
    scorers["multimodal"] = multimodal
    if "posterior+count_pop" in scorers and multimodal.item_bias is not None:
        # Where the model loses against the reference: one half swapped at a time.
        count_pop = scorers["posterior+count_pop"].bias
        scorers["multimodal towers+count_pop"] = ModelScorer(multimodal, item_bias=count_pop)
        bias = multimodal.item_bias.numpy()
        scorers["posterior+multimodal bias"] = PosteriorBaseline(data, popularity=bias)
    results = {
        name: evaluate_ranking(s, data, "test", keep_ranks=True) for name, s in scorers.items()
    }
    ranks = {name: r.pop("ranks") for name, r in results.items()}

    print(f"\n{data.info.name}: test split, {args.epochs} epochs, batch {args.batch_size}")
    print(ranking_table(results))
    r20 = {name: r["overall"]["recall@20"] for name, r in results.items()}
    ratios = {
        f"multimodal/{name}": r20["multimodal"] / max(r20[name], 1e-9)
        for name in ("popularity", "ease", "itemknn")
    }
    if "oracle" in r20:
        ratios["multimodal/oracle"] = r20["multimodal"] / r20["oracle"]
        ratios["multimodal/posterior+true_pop"] = r20["multimodal"] / r20["posterior+true_pop"]
        # The reference: what a history plus training counts allow (target >= 0.95).
        ratios["multimodal/posterior+count_pop"] = r20["multimodal"] / r20["posterior+count_pop"]
    if "id_only" in r20:
        ratios["multimodal/id_only"] = r20["multimodal"] / max(r20["id_only"], 1e-9)
    print("Recall@20 ratios: " + ", ".join(f"{k} = {v:.2f}" for k, v in ratios.items()))
    # Against ID-only on the same users: the difference and its paired standard error.
    paired = {}
    if "id_only" in ranks:
        for k in (20, 50):
            diff, se = paired_recall_difference(ranks["multimodal"], ranks["id_only"], k)
            paired[f"recall@{k}"] = {"difference": diff, "standard_error": se}
            print(f"multimodal − id_only, recall@{k}: {diff:+.4f} (paired SE {se:.4f})")
    print(f"training time: multimodal {multimodal_seconds:.0f} s, id-only {id_seconds:.0f} s")
    for model in (multimodal, id_only):
        if model is not None:
            model.save(out.replace(".json", f"_{model.name}.keras"))
    with open(out, "w") as f:
        payload = {
            "machine": machine(),
            "args": vars(args),
            "results": results,
            "recall@20_ratios": ratios,
            "paired_vs_id_only": paired,
            "training_seconds": {"multimodal": multimodal_seconds, "id_only": id_seconds},
        }
        json.dump(payload, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
