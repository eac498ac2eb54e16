"""Train the multimodal recommender with `model.fit` and compare it with the baselines.

    python examples/train_recommender.py

The library API, no CLI: load (or synthesise) the shapes benchmark, build a
two-tower `Recommender` over item images and descriptions, train it with
`model.fit` and Keras callbacks, score it against popularity and the
ground-truth oracle with the full-catalogue protocol, recommend for one user and
save the model. `mmrec train recommender` does the same with more bookkeeping
(run folder, resume, tf.distribute).

Sizes come from environment variables, so CI runs it in seconds:
``MMREC_EXAMPLE_DATA`` (default ``tf_records/shapes``; synthesised if absent with
``MMREC_EXAMPLE_ITEMS`` items and ``MMREC_EXAMPLE_USERS`` users),
``MMREC_EXAMPLE_EPOCHS``, ``MMREC_EXAMPLE_STEPS`` (steps per epoch; default one
pass) and ``MMREC_EXAMPLE_OUT`` (default ``runs/examples``).
"""

import os

import keras

import mmrec
from mmrec.evaluation.ranking import (
    OracleBaseline,
    PopularityBaseline,
    evaluate_ranking,
    ranking_table,
)
from mmrec.models.recommender import Recommender
from mmrec.training.monitoring import TensorBoardScalars

DATA = os.environ.get("MMREC_EXAMPLE_DATA", "tf_records/shapes")
ITEMS = int(os.environ.get("MMREC_EXAMPLE_ITEMS", 2000))
USERS = int(os.environ.get("MMREC_EXAMPLE_USERS", 1000))
EPOCHS = int(os.environ.get("MMREC_EXAMPLE_EPOCHS", 6))
STEPS = int(os.environ.get("MMREC_EXAMPLE_STEPS", 0)) or None
OUT = os.environ.get("MMREC_EXAMPLE_OUT", "runs/examples")


def main():
    if not os.path.exists(os.path.join(DATA, "dataset.json")):
        mmrec.data.write_shapes(DATA, mmrec.data.ShapesConfig(num_items=ITEMS, num_users=USERS))
    data = mmrec.data.load(DATA)
    keras.utils.set_random_seed(0)

    # Image (downscaled to 16×16) and text encoders; the whole catalogue is embedded at
    # every step, so small encoders keep steps cheap.
    rec = Recommender.from_dataset(
        data,
        modalities=("image", "text"),
        fusion="concat",
        embedding_dim=32,
        encoder_config={
            "image": {"filters": [8, 16], "image_size": 16},
            "text": {"hidden_dim": 16, "sequence_length": 16},
        },
    )
    rec.compile(keras.optimizers.Adam(3e-3))

    batch_size = min(512, data.info.splits["train"])
    # Batches carry their targets' content: a step embeds only the batch's items.
    train = data.interactions(
        "train", batch_size=batch_size, content=rec.modalities, cache=True, repeat=True
    )
    valid = data.interactions("valid", batch_size=batch_size, content=rec.modalities, cache=True)
    steps = STEPS or data.info.splits["train"] // batch_size
    os.makedirs(OUT, exist_ok=True)
    rec.fit(
        train,
        validation_data=valid,
        validation_steps=-(-data.info.splits["valid"] // batch_size),
        epochs=EPOCHS,
        steps_per_epoch=steps,
        callbacks=[
            keras.callbacks.CSVLogger(os.path.join(OUT, "recommender.csv")),
            TensorBoardScalars(os.path.join(OUT, "logs", "recommender")),
        ],
        verbose=2,
    )

    # Full-catalogue ranking on the held-out test targets, next to the baselines.
    scorers = {"popularity": PopularityBaseline(data), "recommender": rec}
    if data.info.affinity:
        scorers["oracle"] = OracleBaseline(data)
    results = {name: evaluate_ranking(s, data, split="test") for name, s in scorers.items()}
    print(ranking_table(results))

    ids, scores = rec.recommend(history=[[3, 17, 42]], k=5)
    print(f"recommended for the history [3, 17, 42]: {ids[0].tolist()}")
    path = os.path.join(OUT, "recommender.keras")
    rec.save(path)  # self-contained: it carries its catalogue
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
