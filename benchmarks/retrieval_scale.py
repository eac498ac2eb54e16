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
import keras_rs  # noqa: E402
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


def plain_graph(k: int):
    """The reference: one matmul over the whole catalogue, the history set to -inf by a
    scatter, one top-k; a compiled graph with no chunking (memory O(users × items))."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None, None], tf.int32),
        ]
    )
    def plain(users, items, exclude):
        scores = tf.matmul(users, items, transpose_b=True)
        rows = tf.broadcast_to(tf.range(tf.shape(exclude)[0])[:, None], tf.shape(exclude))
        valid = exclude >= 0
        where = tf.stack([tf.boolean_mask(rows, valid), tf.boolean_mask(exclude, valid)], 1)
        scores = tf.tensor_scatter_nd_update(scores, where, tf.fill(tf.shape(where)[:1], -np.inf))
        top = tf.math.top_k(scores, k=k)
        return top.indices, top.values

    return plain


def keras_rs_graph(items, k: int):
    """keras-rs `BruteForceRetrieval` over the same items, compiled. It cannot exclude
    a history (nor add an item bias): timed for speed only."""
    layer = keras_rs.layers.BruteForceRetrieval(k=k, return_scores=True)
    layer.update_candidates(items)
    return tf.function(lambda users: layer(users))


def best_of(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def retrieval_part(sizes: list[int], num_users: int, repeats: int, dim: int = 32):
    """top-100 excluding a 20-item history: mmrec's `top_k_excluding` next to the plain
    graph and keras-rs in the same run (best of ``repeats``), and whether the ids agree."""
    rng = np.random.default_rng(1)
    users = tf.constant(rng.normal(size=(num_users, dim)).astype("float32"))
    rows, largest = [], None
    for n in sizes:
        items = rng.normal(size=(n, dim)).astype("float32")
        items /= np.linalg.norm(items, axis=1, keepdims=True)
        items = tf.constant(items)
        exclude = tf.constant(rng.integers(0, n, (num_users, 20)).astype("int32"))
        plain, brute = plain_graph(100), keras_rs_graph(items, 100)
        ours_ids, ours_scores = top_k_excluding(users, items, exclude, k=100)  # warm-up
        plain_ids, plain_scores = plain(users, items, exclude)
        brute(users)
        ours = best_of(repeats, top_k_excluding, users, items, exclude, 100)
        reference = best_of(repeats, plain, users, items, exclude)
        keras_rs_seconds = best_of(repeats, brute, users)
        same = bool(np.array_equal(ours_ids.numpy(), plain_ids.numpy()))
        rows.append(
            {
                "items": n,
                "top_k_excluding_ms": round(1000 * ours, 1),
                "plain_graph_ms": round(1000 * reference, 1),
                "ratio": round(ours / reference, 2),
                "keras_rs_brute_force_ms": round(1000 * keras_rs_seconds, 1),
                "identical_ids": same,
                "max_score_difference": float(np.abs(ours_scores - plain_scores).max()),
            }
        )
        largest = (items, users, exclude, ours_ids.numpy())
    return rows, largest


def faiss_part(items, users, exclude, exact_ids, nlists, nprobes, repeats):
    """An approximate side index (FAISS IVF, inner product) over the largest catalogue:
    recall@100 against the exact top-100 and its speed. It searches k + L and drops the
    history afterwards (the index cannot mask per user)."""
    try:
        import faiss
    except ImportError:
        print("\nfaiss-cpu is not installed (pip install -e '.[ann]'): no approximate index.")
        return []
    items, users, exclude = items.numpy(), users.numpy(), exclude.numpy()
    k, length = exact_ids.shape[1], exclude.shape[1]
    rows = []
    for nlist in nlists:
        start = time.perf_counter()
        quantizer = faiss.IndexFlatIP(items.shape[1])
        index = faiss.IndexIVFFlat(quantizer, items.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(items[np.random.default_rng(0).permutation(len(items))[: 40 * nlist]])
        index.add(items)
        build = time.perf_counter() - start
        for nprobe in nprobes:
            index.nprobe = nprobe
            found = []

            def search(index=index, found=found):
                _, ids = index.search(users, k + length)
                found[:] = [[i for i in r if i not in set(h)][:k] for r, h in zip(ids, exclude)]

            seconds = best_of(repeats, search)
            recall = np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact_ids)])
            rows.append(
                {
                    "index": f"IVF{nlist},Flat",
                    "nprobe": nprobe,
                    "build_s": round(build, 1),
                    "search_ms": round(1000 * seconds, 1),
                    "recall@100": round(float(recall), 3),
                }
            )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--model", default=None, help="a trained Recommender .keras (no audio)")
    parser.add_argument("--max-items", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="timings: best of this many")
    parser.add_argument("--skip-catalogue", action="store_true", help="only the retrieval parts")
    parser.add_argument("--out", default="benchmarks/results/retrieval_scale.json")
    args = parser.parse_args(argv)

    catalogue = []
    if not args.skip_catalogue:
        catalogue = catalogue_part(args.items, args.users, args.model)
        print(f"Part 1: {args.items:,}-item catalogue, batch of {args.users} users\n")
        print_table(catalogue, ["step", "seconds", "items/s"])
    sizes = [args.max_items // 8, args.max_items // 4, args.max_items // 2, args.max_items]
    retrieval, largest = retrieval_part(sizes, args.users, args.repeats)
    print(
        f"\nPart 2: exact top-100 excluding a 20-item history, {args.users} users, dim 32 "
        f"(best of {args.repeats}); keras-rs BruteForceRetrieval excludes nothing\n"
    )
    print_table(retrieval, list(retrieval[0]))
    approximate = faiss_part(*largest, nlists=[1024, 4096], nprobes=[8, 32, 128], repeats=2)
    if approximate:
        print(f"\nPart 3: FAISS IVF side index over {sizes[-1]:,} random unit vectors\n")
        print_table(approximate, list(approximate[0]))
    write_json(
        args.out,
        {
            "catalogue": catalogue,
            "retrieval": retrieval,
            "approximate": approximate,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
