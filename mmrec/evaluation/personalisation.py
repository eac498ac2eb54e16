"""Personalisation hit-rates: does an item (real or generated) match what its user likes?

Ground truth comes from the dataset: ``data.users()`` holds each user's favourite
classes per preference attribute (``pref_<attribute>``, padded with -1), and
`DatasetInfo.strong_preferences` says which attributes define a *hit* (shapes:
colour and shape; Fashion-MNIST: category). Per-attribute rates are reported
for every preference attribute (e.g. category and brightness).
"""

from __future__ import annotations

import numpy as np

from mmrec.data.schema import preference_key


def preference_hits(labels, user_ids, users, attributes=None) -> np.ndarray:
    """Per item: each attribute's class is among the user's favourites (bool ``[N]``).

    Args:
        labels: ``{attribute: class ids [N]}`` of the items (judged or true).
        user_ids: the user of each item ``[N]``.
        users: ``data.users()`` (rows ordered by user id, ``pref_<attribute>``).
        attributes: the attributes that must all match; ``None``: every key of ``labels``.
    """
    user_ids = np.asarray(user_ids)
    row = np.searchsorted(users["user_id"], user_ids)
    hit = np.ones(len(user_ids), dtype=bool)
    for name in labels if attributes is None else attributes:
        favourites = np.asarray(users[preference_key(name)])[row]
        if favourites.ndim == 1:
            favourites = favourites[:, None]
        hit &= np.any(favourites == np.asarray(labels[name])[:, None], axis=1)
    return hit


def random_item_hit_rate(catalogue, user_ids, users, attributes) -> float:
    """The base rate: the expected hit-rate of a catalogue item drawn uniformly at random."""
    labels = {name: catalogue.labels[name] for name in attributes}
    count = len(next(iter(labels.values())))
    rates = [
        np.mean(preference_hits(labels, np.full(count, u), users, attributes))
        for u in np.unique(user_ids)
    ]
    return float(np.mean(rates))


def personalisation_hit_rate(judge, images, user_ids, users, attributes) -> float:
    """The share of images whose *judged* attributes are all among their user's favourites."""
    predicted = judge.predict_attributes(images)
    return float(np.mean(preference_hits(predicted, user_ids, users, attributes)))


def personalisation_report(judge, data, images, requested, user_ids, targets) -> dict:
    """Hit-rates of generated images next to the references that make them readable.

    ``images`` were generated with the attributes ``requested`` for ``user_ids``,
    which is ``np.repeat(test_users, k)`` (k images per test user); ``targets`` are
    the test users' own held-out items, in the same order.

    Returns ``hit_rate`` (judged generated images), ``hit_rate_held_out_items``
    (the users' own held-out items, judged; ``..._true_labels`` with their true
    labels), ``hit_rate_random_items``, ``hit_rate_sampled_attributes`` (what was
    asked for), ``hit_attributes``, and ``hit_rate_<attribute>`` for every
    preference attribute (judged generated images, that attribute alone).
    """
    info = data.info
    strong = list(info.strong_preferences)
    users = data.users()
    catalogue = data.catalogue()
    predicted = judge.predict_attributes(images)
    per_user = len(user_ids) // len(targets)
    target_users = np.asarray(user_ids)[::per_user]
    real_targets = catalogue.images.numpy()[targets]
    judged_targets = judge.predict_attributes(real_targets)
    true_targets = {name: catalogue.labels[name][targets] for name in strong}
    report = {
        "hit_attributes": strong,
        "hit_rate": float(np.mean(preference_hits(predicted, user_ids, users, strong))),
        "hit_rate_held_out_items": float(
            np.mean(preference_hits(judged_targets, target_users, users, strong))
        ),
        "hit_rate_held_out_items_true_labels": float(
            np.mean(preference_hits(true_targets, target_users, users, strong))
        ),
        "hit_rate_random_items": random_item_hit_rate(catalogue, target_users, users, strong),
        "hit_rate_sampled_attributes": float(
            np.mean(preference_hits(requested, user_ids, users, strong))
        ),
    }
    for name in info.user_preferences:
        if name in predicted:
            hits = preference_hits(predicted, user_ids, users, [name])
            report[f"hit_rate_{name}"] = float(np.mean(hits))
    return report
