"""Measuring complete generated items: do the picture, the text and the sound agree?

Where it sits in the data flow: after a `MultimodalItemGenerator` is assembled.
Each modality has its own independent judge, trained on real content only: the
image judge (`AttributeJudge`), the text judge (`TextJudge`) and the audio judge
(`AudioJudge`). Each reads the attributes its modality can show (a sound shows
colour as pitch and shape as its number of pulses, not size). Reported:

* **cross-modal consistency** per attribute: the share of items whose judged
  attribute is the same in every modality that shows it (e.g. colour across
  image, text and sound; shape across text and sound, as in the issue, and
  across all three);
* **agreement with the sampled attributes**: per modality and attribute, and
  the share of items on which *every* judge reads the sampled value of *every*
  attribute the three modalities share;
* **personalisation hit-rate** of the items (users' test histories), judged per
  modality, next to the users' own held-out items and random items
  (`mmrec.evaluation.personalisation`).
"""

from __future__ import annotations

import numpy as np

from mmrec.evaluation.personalisation import personalisation_report, preference_hits


def judge_items(items, judges, readable=None) -> dict[str, dict[str, np.ndarray]]:
    """What each modality's judge reads: ``{modality: {attribute: class ids [N]}}``.

    Args:
        items: `MultimodalItemGenerator.generate_item` output (``image``, ``text``,
            ``audio``).
        judges: ``{modality: judge}``, each with ``predict_attributes`` (any subset).
        readable: ``{modality: [attributes]}`` the modality shows (e.g. no size in a
            sound); ``None``: every attribute its judge has a head for.
    """
    verdicts = {}
    for modality, judge in judges.items():
        read = judge.predict_attributes(items[modality])
        shown = read if readable is None else readable.get(modality, read)
        verdicts[modality] = {name: read[name] for name in read if name in shown}
    return verdicts


def consistency_report(verdicts, sampled, preferred=None) -> dict:
    """Cross-modal agreement of judged attributes, and agreement with the sampled ones.

    Args:
        verdicts: `judge_items` output.
        sampled: ``{attribute: int [N]}``, the attributes each item was made of.
        preferred: the attributes users have preferences for (the dataset's
            ``strong_preferences``: colour and shape on shapes), for
            ``all_agree_on_preferred``.

    Returns keys ``consistency_<attribute>`` (all modalities that read it agree),
    ``consistency_<attribute>_<m1>_<m2>`` (two modalities agree),
    ``accuracy_<modality>_<attribute>`` (the judge reads the sampled value),
    ``shared_attributes`` (read by every modality) and ``all_agree_with_sampled``
    (every judge reads every shared attribute's sampled value; ``None`` when no
    attribute is read by every modality) and, with ``preferred``,
    ``all_agree_on_preferred``: every judge that reads a preferred attribute reads
    its sampled value, for every preferred attribute (what personalisation is
    about: e.g. a red star in the picture, the text and the sound).
    """
    report = {}
    modalities = list(verdicts)
    for name in sampled:
        readers = [m for m in modalities if name in verdicts[m]]
        for m in readers:
            accuracy = np.mean(verdicts[m][name] == sampled[name])
            report[f"accuracy_{m}_{name}"] = float(accuracy)
        if len(readers) < 2:
            continue
        values = np.stack([verdicts[m][name] for m in readers])
        report[f"consistency_{name}"] = float(np.mean(np.all(values == values[0], axis=0)))
        for i, first in enumerate(readers):
            for second in readers[i + 1 :]:
                same = verdicts[first][name] == verdicts[second][name]
                report[f"consistency_{name}_{first}_{second}"] = float(np.mean(same))
    shared = [n for n in sampled if all(n in verdicts[m] for m in modalities)]
    agree = np.ones(len(next(iter(sampled.values()))), dtype=bool)
    for name in shared:
        for m in modalities:
            agree &= verdicts[m][name] == sampled[name]
    report["shared_attributes"] = shared
    report["all_agree_with_sampled"] = float(np.mean(agree)) if shared else None
    if preferred:
        agree = np.ones_like(agree)
        for name in preferred:
            for m in modalities:
                if name in verdicts[m]:
                    agree &= verdicts[m][name] == sampled[name]
        report["preferred_attributes"] = list(preferred)
        report["all_agree_on_preferred"] = float(np.mean(agree))
    return report


def held_out_users(data, num_users=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The test split's ``(user ids, histories [U, L] padded with -1, held-out targets)``."""
    batches = list(data.interactions("test", batch_size=4096, shuffle=False).as_numpy_iterator())
    columns = {k: np.concatenate([b[k] for b in batches]) for k in ("user_id", "history", "target")}
    rows = slice(None, num_users)
    return columns["user_id"][rows], columns["history"][rows], columns["target"][rows]


def evaluate_item_generation(
    item_generator, data, judges, num_users=200, seed=0, readable=None
) -> dict:
    """One item for each of the first ``num_users`` test users, judged in every modality.

    Args:
        item_generator: a `MultimodalItemGenerator` with a preference model.
        data: the dataset (test users, their held-out items, their preferences).
        judges: ``{"image": AttributeJudge, "text": TextJudge, "audio": AudioJudge}``
            (any subset; the image judge also scores the users' held-out items).
        num_users: test users (one item each).
        seed: item i is drawn from seed ``seed + i``.
        readable: ``{modality: [attributes]}`` each modality shows (`judge_items`).

    Returns:
        `consistency_report` keys, ``num_items``, ``hit_rate_<modality>`` (judged
        generated content of that modality), ``hit_rate_sampled_attributes``,
        ``hit_rate_held_out_items`` and ``hit_rate_random_items`` (from the image
        judge when given), and ``samples`` (a few texts with their attributes).
    """
    user_ids, histories, targets = held_out_users(data, num_users)
    items = item_generator.generate_item(histories, num=1, seed=seed)
    verdicts = judge_items(items, judges, readable)
    sampled = items["attributes"]
    strong = list(data.info.strong_preferences)
    report = {"num_items": len(user_ids), **consistency_report(verdicts, sampled, strong)}
    users = data.users()
    for modality, read in verdicts.items():
        if all(name in read for name in strong):
            hits = preference_hits(read, user_ids, users, strong)
            report[f"hit_rate_{modality}"] = float(np.mean(hits))
    if "image" in judges:
        references = personalisation_report(
            judges["image"], data, items["image"], sampled, user_ids, targets
        )
        for key in ("hit_rate_held_out_items", "hit_rate_random_items", "hit_attributes"):
            report[key] = references[key]
    report["hit_rate_sampled_attributes"] = float(
        np.mean(preference_hits(sampled, user_ids, users, strong))
    )
    names = data.info.attributes
    report["samples"] = [
        {
            "user_id": int(user_ids[i]),
            "attributes": {n: names[n][int(sampled[n][i])] for n in sampled},
            "text": items["text"][i],
        }
        for i in range(min(5, len(user_ids)))
    ]
    return report
