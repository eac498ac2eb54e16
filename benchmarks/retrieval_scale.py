"""Scale check: embed a 100,000-item catalogue and retrieve top-100 over up to 1M items.

    python benchmarks/retrieval_scale.py --items 100000 --users 256

Part 1 renders a synthetic shapes catalogue of --items items in memory (images and
text), builds a multimodal `Recommender` over it (the trained item tower of
--model if given, else a freshly initialised one of the same size: the cost is
the same), embeds the whole catalogue in batches and answers a batch of users
with top-100 recommendations that exclude their histories. Part 2 times
`top_k_excluding` on random unit embeddings for 125k … 1M items to show that the
full-catalogue retrieval scales linearly, in chunks of bounded memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import print_table, write_json  # noqa: E402

from mmrec.data import synthetic  # noqa: E402
from mmrec.data.vocabulary import learn_wordpiece_vocabulary  # noqa: E402
from mmrec.layers import MultimodalItemEncoder, TextTokenizer  # noqa: E402
from mmrec.models.recommender import Recommender, top_k_excluding  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def catalogue_part(num_items: int, num_users: int, model_path: str | None) -> list[dict]:
    rng = np.random.default_rng(0)
    config = synthetic.ShapesConfig(num_items=num_items, num_users=num_users)
    start = time.perf_counter()
    items = synthetic.sample_items(config, rng)
    images = synthetic.render_images(items, 32, rng)
    texts = [synthetic.describe(items, i) for i in range(num_items)]
    render_seconds = time.perf_counter() - start

    if model_path:
        trained = keras.saving.load_model(model_path)
        tokenizer, encoder = trained.tokenizer, trained.item_encoder
    else:
        tokenizer = TextTokenizer(learn_wordpiece_vocabulary(texts[:5000]), sequence_length=24)
        encoder = MultimodalItemEncoder(
            modalities=("image", "text"),
            embedding_dim=32,
            encoder_config={
                "image": {"filters": [16, 32, 64]},
                "text": {
                    "hidden_dim": 32,
                    "sequence_length": 24,
                    "vocabulary_size": tokenizer.vocabulary_size(),
                },
            },
        )
    tokens = np.concatenate(
        [tokenizer(tf.constant(texts[s : s + 8192])).numpy() for s in range(0, num_items, 8192)]
    )
    content = {"image": images, "text": tokens.astype("int32")}
    if "audio" in encoder.modalities:
        raise SystemExit("Use a model without audio for the scale check (memory).")
    rec = Recommender(catalogue=content, item_encoder=encoder, max_history=50)

    start = time.perf_counter()
    embeddings = rec.item_embeddings(batch_size=4096)
    embed_seconds = time.perf_counter() - start
    histories = rng.integers(0, num_items, (num_users, 20))
    start = time.perf_counter()
    ids, _ = rec.recommend(histories, k=100, batch_size=num_users, item_embeddings=embeddings)
    recommend_seconds = time.perf_counter() - start
    assert ids.shape == (num_users, 100)
    assert not any(set(ids[u]) & set(histories[u]) for u in range(num_users))
    return [
        {
            "step": f"render {num_items:,} items (numpy)",
            "seconds": f"{render_seconds:.1f}",
            "items/s": f"{num_items / render_seconds:,.0f}",
        },
        {
            "step": f"embed catalogue → {tuple(embeddings.shape)}",
            "seconds": f"{embed_seconds:.1f}",
            "items/s": f"{num_items / embed_seconds:,.0f}",
        },
        {
            "step": f"recommend top-100 for {num_users} users (embedded catalogue)",
            "seconds": f"{recommend_seconds:.2f}",
            "items/s": "",
        },
        {"step": "peak resident memory (GiB)", "seconds": f"{peak_rss_gib():.2f}", "items/s": ""},
    ]


def retrieval_part(sizes: list[int], num_users: int, dim: int = 32) -> list[dict]:
    rng = np.random.default_rng(1)
    users = rng.normal(size=(num_users, dim)).astype("float32")
    exclude = rng.integers(0, sizes[0], (num_users, 20)).astype("int32")
    rows = []
    for n in sizes:
        items = rng.normal(size=(n, dim)).astype("float32")
        items /= np.linalg.norm(items, axis=1, keepdims=True)
        top_k_excluding(users, items[:1000], exclude, k=100)  # warm-up
        start = time.perf_counter()
        top_k_excluding(users, items, exclude, k=100)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "items": f"{n:,}",
                "ms / batch": f"{1000 * seconds:.0f}",
                "ms / user": f"{1000 * seconds / num_users:.2f}",
                "ns / (user·item)": f"{1e9 * seconds / num_users / n:.2f}",
            }
        )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--model", default=None, help="a trained Recommender .keras (no audio)")
    parser.add_argument("--max-items", type=int, default=1_000_000)
    parser.add_argument("--out", default="benchmarks/results/retrieval_scale.json")
    args = parser.parse_args(argv)

    catalogue = catalogue_part(args.items, args.users, args.model)
    print(f"Part 1: {args.items:,}-item catalogue, batch of {args.users} users\n")
    print_table(catalogue, ["step", "seconds", "items/s"])
    sizes = [args.max_items // 8, args.max_items // 4, args.max_items // 2, args.max_items]
    retrieval = retrieval_part(sizes, args.users)
    print(f"\nPart 2: top-100 retrieval, {args.users} users per batch, dim 32, chunks of 65,536\n")
    print_table(retrieval, ["items", "ms / batch", "ms / user", "ns / (user·item)"])
    write_json(args.out, {"catalogue": catalogue, "retrieval": retrieval, "args": vars(args)})


if __name__ == "__main__":
    main()
