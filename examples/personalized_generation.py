"""Personalised image generation: a cGAN conditioned on what a trained recommender knows
about each user, trained with `model.fit`, judged by an independent classifier.

    python examples/personalized_generation.py

The library API, no CLI:

1. train a small two-tower `Recommender` (or load one: ``MMREC_EXAMPLE_RECOMMENDER``,
   a ``.keras`` file) and freeze its user tower (`Recommender.build_user_encoder`:
   the catalogue is embedded once, so conditioning costs one lookup per step);
2. train a user-conditioned `ConditionalGAN` with `model.fit`: a preference head
   on the frozen user embedding learns which attributes each user favours, the
   generator draws them; `SampleGrid` writes a grid of the same users every epoch;
3. train the judge (`train_judge`, a CNN on real items) and score the images:
   conditional accuracy and the personalisation hit-rate next to the users' own
   held-out items and random items;
4. write one PNG per user: their recent items, then generated images.

Sizes come from environment variables (CI runs it in seconds): ``MMREC_EXAMPLE_DATA``,
``MMREC_EXAMPLE_ITEMS``, ``MMREC_EXAMPLE_USERS``, ``MMREC_EXAMPLE_EPOCHS``,
``MMREC_EXAMPLE_STEPS`` (GAN steps per epoch), ``MMREC_EXAMPLE_JUDGE_EPOCHS``,
``MMREC_EXAMPLE_OUT`` — as in `train_recommender.py`.
"""

import os

import keras
import numpy as np

import mmrec
from mmrec.evaluation.generation import evaluate_generation, train_judge
from mmrec.models import ConditionalGAN
from mmrec.models.recommender import Recommender
from mmrec.training import SampleGrid, image_grid, write_png

DATA = os.environ.get("MMREC_EXAMPLE_DATA", "tf_records/shapes")
ITEMS = int(os.environ.get("MMREC_EXAMPLE_ITEMS", 2000))
USERS = int(os.environ.get("MMREC_EXAMPLE_USERS", 1000))
EPOCHS = int(os.environ.get("MMREC_EXAMPLE_EPOCHS", 6))
STEPS = int(os.environ.get("MMREC_EXAMPLE_STEPS", 100))
JUDGE_EPOCHS = int(os.environ.get("MMREC_EXAMPLE_JUDGE_EPOCHS", 15))
RECOMMENDER = os.environ.get("MMREC_EXAMPLE_RECOMMENDER")
OUT = os.environ.get("MMREC_EXAMPLE_OUT", "runs/examples")


def recommender(data):
    if RECOMMENDER:
        return keras.saving.load_model(RECOMMENDER, compile=False)
    rec = Recommender.from_dataset(
        data,
        modalities=("image", "text"),
        embedding_dim=32,
        encoder_config={
            "image": {"filters": [8, 16], "image_size": 16},
            "text": {"hidden_dim": 16, "sequence_length": 16},
        },
    )
    rec.compile(keras.optimizers.Adam(3e-3))
    batch_size = min(512, data.info.splits["train"])
    rec.fit(
        data.interactions(
            "train", batch_size=batch_size, content=rec.modalities, cache=True, repeat=True
        ),
        epochs=EPOCHS,
        steps_per_epoch=min(STEPS, data.info.splits["train"] // batch_size),
        verbose=2,
    )
    return rec


def main():
    if not os.path.exists(os.path.join(DATA, "dataset.json")):
        mmrec.data.write_shapes(DATA, mmrec.data.ShapesConfig(num_items=ITEMS, num_users=USERS))
    data = mmrec.data.load(DATA)
    keras.utils.set_random_seed(0)

    # 1. What the recommender knows about a user: its user tower, frozen.
    user_encoder = recommender(data).build_user_encoder()

    # 2. A cGAN conditioned on users, trained with model.fit.
    gan = ConditionalGAN.from_dataset(
        data,
        condition="user",
        user_encoder=user_encoder,
        latent_dim=32,
        generator_filters=(128, 64, 32, 16),
        discriminator_filters=(32, 64, 64),
        ema_decay=0.99,
        seed=0,
    )
    gan.compile()  # Adam(2e-4, beta_1=0.5) for both networks, non-saturating loss
    test_users = next(iter(data.interactions("test", batch_size=4, shuffle=False)))
    histories = [[i for i in row if i >= 0] for row in test_users["history"].numpy().tolist()]
    gan.fit(
        data.generation_pairs("train", batch_size=64, repeat=True, drop_remainder=True),
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        callbacks=[SampleGrid(histories, directory=os.path.join(OUT, "gan_samples"), num=8)],
        verbose=2,
    )

    # 3. The judge: trained on real items only, independent of the discriminator.
    judge, accuracy = train_judge(data, epochs=JUDGE_EPOCHS, filters=(32, 64, 64), feature_dim=64)
    print("judge held-out accuracy:", {k: round(v, 3) for k, v in accuracy.items()})
    report = evaluate_generation(gan, data, judge)
    accuracy = report["conditional_accuracy"]
    print("conditional accuracy:", {k: round(v, 3) for k, v in accuracy.items()})
    print(
        f"personalisation hit-rate {report['hit_rate']:.3f} (users' own held-out items "
        f"{report['hit_rate_held_out_items']:.3f}, random items "
        f"{report['hit_rate_random_items']:.3f})"
    )

    # 4. One PNG per user: recent real items, then generated images.
    images = data.catalogue().images.numpy()
    for user, history in zip(test_users["user_id"].numpy(), histories):
        real = images[history[-8:]]
        real = np.concatenate([real, np.full((8 - len(real),) + real.shape[1:], 255, "uint8")])
        generated = gan.generate(user_history=history, num=8, seed=0, dtype="uint8")
        path = os.path.join(OUT, f"user_{user}.png")
        write_png(path, image_grid(np.stack([real, generated])))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
