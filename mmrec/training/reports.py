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
        rows.append(_hit_rate_row(generation))
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


def _hit_rate_row(report, key="hit_rate", label="personalisation hit-rate") -> tuple[str, str]:
    hit = "+".join(report.get("hit_attributes", ()))
    return (
        label,
        f"{report[key]:.3f}{f' on {hit}' if hit else ''} (users' own held-out items "
        f"{report['hit_rate_held_out_items']:.3f}, random items "
        f"{report['hit_rate_random_items']:.3f})",
    )


def item_table(report) -> str:
    """Complete generated items (`mmrec.evaluation.items.evaluate_item_generation`): do the
    modalities agree with each other and with the attributes sampled for the user?"""
    rows = [("items judged", str(report["num_items"]))]
    modalities = [m for m in ("image", "text", "audio") if f"hit_rate_{m}" in report]
    for key, value in report.items():
        if key.startswith("consistency_") and isinstance(value, float):
            what = key[len("consistency_") :].split("_")
            pair = f" ({' vs '.join(what[1:])})" if len(what) > 1 else " (every modality)"
            rows.append((f"{what[0]} agrees{pair}", f"{value:.3f}"))
    for modality in ("image", "text", "audio"):
        read = {
            k.split("_", 2)[2]: v
            for k, v in report.items()
            if k.startswith(f"accuracy_{modality}_")
        }
        if read:
            rows.append((f"{modality} judge reads the sampled", _join(read)))
    if report.get("all_agree_with_sampled") is not None:
        shared = "+".join(report["shared_attributes"])
        rows.append(
            (f"every judge reads the sampled {shared}", f"{report['all_agree_with_sampled']:.3f}")
        )
    if report.get("all_agree_on_preferred") is not None:
        preferred = "+".join(report["preferred_attributes"])
        value = f"{report['all_agree_on_preferred']:.3f}"
        rows.append((f"every judge reads the sampled {preferred}", value))
    for modality in modalities:
        if "hit_rate_held_out_items" in report:
            rows.append(_hit_rate_row(report, f"hit_rate_{modality}", f"hit-rate ({modality})"))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    for sample in report.get("samples", ()):
        lines.append(f"  user {sample['user_id']}: {sample['text']}")
    return "\n".join(lines)


def text_generation_table(report) -> str:
    """A text generator's scores (a text run's metrics) and its sample descriptions.

    Example:

    ```python
    print(text_generation_table(train("text", data, "runs/text", "tiny").metrics))
    ```
    """
    valid = report["valid"]
    rows = [
        (
            "valid loss / perplexity",
            f"{valid['loss']:.3f} / {valid['perplexity']:.2f} "
            f"(token accuracy {valid['token_accuracy']:.3f})",
        )
    ]
    if "generation" in report:
        generation = report["generation"]
        rows.append(("judge held-out accuracy", _join(report["judge"]["held_out_accuracy"])))
        rows.append(("conditional accuracy", _join(generation["conditional_accuracy"])))
        if "hit_rate" in generation:
            rows.append(_hit_rate_row(generation))
        if "perplexity" in generation:
            rows.append(
                (
                    f"{generation.get('perplexity_split', 'test')} perplexity",
                    f"{generation['perplexity']:.2f} (unigram "
                    f"{generation['perplexity_unigram']:.2f}, bigram "
                    f"{generation['perplexity_bigram']:.2f})",
                )
            )
        if "explanation_faithful" in generation:
            rows.append(
                (
                    "faithful explanations",
                    f"{generation['explanation_faithful']:.3f} (malformed "
                    f"{generation['explanation_malformed']:.3f}, specific "
                    f"{generation['explanation_specific']:.3f})",
                )
            )
        for name in ("distinct_1", "distinct_2", "self_bleu"):
            real = generation.get(f"reference_{name}")
            rows.append(
                (
                    name.replace("_", "-"),
                    f"{generation[name]:.3f}"
                    + ("" if real is None else f" (real descriptions: {real:.3f})"),
                )
            )
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    if report.get("samples"):
        lines.append("sample descriptions:")
    for sample in report.get("samples", ()):
        lines.append(f"  {_describe_condition(sample['condition'])}: {sample['text']}")
    return "\n".join(lines)


def _describe_condition(condition) -> str:
    """``shape=star,colour=red`` for attributes; a history by its length and last items;
    an explanation's ``(history, item id)`` as ``history … → item 10``."""
    if isinstance(condition, dict):
        return ",".join(f"{k}={v}" for k, v in condition.items())
    if (
        isinstance(condition, list | tuple)
        and len(condition) == 2
        and isinstance(condition[0], list | tuple)
    ):
        return f"{_describe_condition(list(condition[0]))} → item {condition[1]}"
    if isinstance(condition, list) and len(condition) > 3:
        last = ", ".join(str(i) for i in condition[-3:])
        return f"history of {len(condition)} items (…, {last})"
    return str(condition)
