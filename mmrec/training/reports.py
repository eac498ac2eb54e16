"""Reports of finished runs as aligned text: what `mmrec train` and `mmrec quickstart` print.

Where it sits in the data flow: after evaluation. The tables read the metrics
dicts that go into ``metrics.json``; they name no dataset's attributes (the
metrics carry them: shapes' colour and shape, Fashion-MNIST's category…).
"""

from __future__ import annotations


def generation_table(report) -> str:
    """The judge's verdict on a generator (a gan/vae run's metrics), one row per measure.

    Example:

    ```python
    print(generation_table(train("gan", data, "runs/gan", recommender="runs/rec").metrics))
    ```
    """
    generation = report["generation"]
    rows = [
        ("judge held-out accuracy", _join(report["judge"]["held_out_accuracy"])),
        ("conditional accuracy", _join(generation["conditional_accuracy"])),
    ]
    if "hit_rate" in generation:
        hit = "+".join(generation.get("hit_attributes", ()))
        rows.append(
            (
                "personalisation hit-rate",
                f"{generation['hit_rate']:.3f}{f' on {hit}' if hit else ''} (users' own "
                f"held-out items {generation['hit_rate_held_out_items']:.3f}, random items "
                f"{generation['hit_rate_random_items']:.3f})",
            )
        )
        per_attribute = {
            name: generation[f"hit_rate_{name}"]
            for name in generation["conditional_accuracy"]
            if f"hit_rate_{name}" in generation
        }
        if per_attribute:
            rows.append(("hit-rate per attribute", _join(per_attribute)))
    rows.append(
        (
            "FCD / KCD",
            f"{generation['fcd']:.2f} / {generation['kcd']:.3f} "
            f"(real vs real: {generation['fcd_real_reference']:.2f})",
        )
    )
    rows.append(
        (
            "diversity",
            f"{generation['diversity']:.3f} "
            f"(real items alike: {generation['diversity_real_reference']:.3f})",
        )
    )
    if "valid" in report:
        valid = report["valid"]
        rows.append(
            (
                "valid −ELBO",
                f"{valid['neg_elbo']:.1f} nats/image = {valid['bits_per_dim']:.3f} "
                f"bits/dim (KL {valid['kl']:.1f})",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _join(values) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())
