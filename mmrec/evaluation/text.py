"""Measuring generated text (item descriptions, explanations of recommendations).

The text counterpart of `mmrec.evaluation.generation`, used after a text generator
is trained. `TextJudge`, trained on the real descriptions of the judge's training
items (`judge_split`), gives **conditional accuracy** and the **personalisation
hit-rate** (`text_personalisation_report`); `NGramLanguageModel` gives the
**perplexity** baselines; `distinct_n` and `self_bleu` the **diversity**;
`explanation_faithfulness` checks every attribute an explanation names ("you often
pick red stars; this is a red heart (dots, large)") against the
user's history and the item.
"""

from __future__ import annotations

import collections
import math
import re

import keras
import numpy as np
import tensorflow as tf

from mmrec.data.synthetic import attribute_synonyms
from mmrec.evaluation.generation import judge_split
from mmrec.evaluation.personalisation import preference_hits, random_item_hit_rate
from mmrec.formats import label_key
from mmrec.layers import TextEncoder, TextTokenizer
from mmrec.models.attributes import check_attributes, num_classes


@keras.saving.register_keras_serializable(package="mmrec")
class TextJudge(keras.Model):
    """A text classifier of item attributes; the judge of generated descriptions.

    ``tf.string [B]`` → `TextTokenizer` → `TextEncoder` (one transformer block) →
    ``Dense(128, relu)`` → one softmax head per attribute: ``{attribute: float32
    [B, C]}`` probabilities. Train it with `train_text_judge`.

    Args:
        vocabulary: the WordPiece tokens, or the path of a ``vocab.txt``.
        attributes: attribute name → number of classes (or list of class names).
        sequence_length: tokens read per text (longer texts are truncated).
        embedding_dim: width of the text embedding.
        hidden_dim: width of the token embeddings and of the transformer block.

    Example:

    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "red", "blue", "star", "heart"]
    >>> judge = TextJudge(vocab, {"colour": ["red", "blue"], "shape": ["star", "heart"]})
    >>> judge(tf.constant(["a red star", "a blue heart"]))["shape"].shape
    TensorShape([2, 2])
    >>> judge.predict_attributes(["a red star"])["colour"].shape
    (1,)
    """

    def __init__(
        self, vocabulary, attributes, sequence_length=24, embedding_dim=64, hidden_dim=64, **kwargs
    ):
        attributes = check_attributes(attributes)
        # === Layers ===
        self.tokenizer = TextTokenizer(vocabulary, sequence_length, name="tokenizer")
        self.encoder = TextEncoder(
            self.tokenizer.vocabulary_size(),
            embedding_dim=embedding_dim,
            sequence_length=sequence_length,
            hidden_dim=hidden_dim,
            name="encoder",
        )
        self.hidden = keras.layers.Dense(128, activation="relu", name="hidden")
        self.heads = {
            name: keras.layers.Dense(classes, activation="softmax", name=name, dtype="float32")
            for name, classes in num_classes(attributes).items()
        }

        # === Functional Model ===
        text = keras.Input(shape=(), dtype="string", name="text")
        hidden = self.hidden(self.encoder(self.tokenizer(text)))
        outputs = {name: head(hidden) for name, head in self.heads.items()}
        super().__init__(inputs=text, outputs=outputs, **kwargs)

        # === Config ===
        self.vocabulary = self.tokenizer.get_vocabulary()
        self.attributes = attributes
        self.sequence_length = sequence_length
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim

    @classmethod
    def from_dataset(cls, data, **kwargs):
        """A judge for a dataset's vocabulary and attributes."""
        if data.vocabulary_path is None:
            raise ValueError(
                "Expected a dataset with a WordPiece vocabulary (vocab.txt). "
                f"Received: {data.path}, which has none"
            )
        attributes = {name: list(classes) for name, classes in data.metadata.attributes.items()}
        return cls(data.vocabulary_path, attributes, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocabulary": self.vocabulary,
            "attributes": self.attributes,
            "sequence_length": self.sequence_length,
            "embedding_dim": self.embedding_dim,
            "hidden_dim": self.hidden_dim,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def compile(self, optimizer=None, **kwargs):
        """Adam(2e-3) and one sparse cross-entropy (on the softmax) per attribute by default."""
        kwargs.setdefault("loss", {n: "sparse_categorical_crossentropy" for n in self.heads})
        kwargs.setdefault("metrics", {n: ["accuracy"] for n in self.heads})
        super().compile(optimizer=optimizer or keras.optimizers.Adam(2e-3), **kwargs)

    def get_compile_config(self):
        # A loaded judge predicts; call `compile()` again to train it further.
        return {}

    def predict_attributes(self, texts, batch_size=256) -> dict[str, np.ndarray]:
        """Class ids per attribute, ``{attribute: int [N]}``, of texts (str, bytes or tf.string)."""
        texts = tf.reshape(tf.convert_to_tensor(texts, dtype=tf.string), [-1])
        ids = {name: [np.zeros(0, np.int64)] for name in self.heads}
        for start in range(0, int(texts.shape[0]), batch_size):
            for name, p in self(texts[start : start + batch_size], training=False).items():
                ids[name].append(np.argmax(keras.ops.convert_to_numpy(p), axis=-1))
        return {name: np.concatenate(parts) for name, parts in ids.items()}

    def accuracy(self, texts, labels, batch_size=256) -> dict[str, float]:
        """Per-attribute accuracy against ``labels`` (``{attribute: ids}``, or
        ``label_<attribute>`` keys); attributes without labels are left out."""
        predicted = self.predict_attributes(texts, batch_size)
        keys = {name: name if name in labels else label_key(name) for name in self.heads}
        return {
            name: float(np.mean(predicted[name] == np.asarray(labels[key])))
            for name, key in keys.items()
            if key in labels
        }


def train_text_judge(data, epochs=6, batch_size=64, seed=0, verbose=0, **kwargs) -> TextJudge:
    """Trains a `TextJudge` on the real descriptions of the judge's training items.

    Adam with a cosine-decayed learning rate from the judge's default; ``kwargs`` go
    to the judge. Score it with `text_judge_held_out_accuracy`.
    """
    keras.utils.set_random_seed(seed)
    judge = TextJudge.from_dataset(data, name="text_judge", **kwargs)
    judge.compile()
    catalogue = data.catalogue()
    ids, _ = judge_split(catalogue.num_items)
    labels = {name: values[ids] for name, values in catalogue.labels.items() if name in judge.heads}
    ds = tf.data.Dataset.from_tensor_slices((tf.gather(catalogue.texts, ids), labels))
    ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    judge.optimizer.learning_rate = keras.optimizers.schedules.CosineDecay(
        float(judge.optimizer.learning_rate), decay_steps=epochs * math.ceil(len(ids) / batch_size)
    )
    judge.fit(ds.prefetch(tf.data.AUTOTUNE), epochs=epochs, verbose=verbose, shuffle=False)
    return judge


def text_judge_held_out_accuracy(judge, data) -> dict[str, float]:
    """The judge's per-attribute accuracy on the real descriptions of its held-out items."""
    catalogue = data.catalogue()
    _, ids = judge_split(catalogue.num_items)
    labels = {name: values[ids] for name, values in catalogue.labels.items()}
    return judge.accuracy(tf.gather(catalogue.texts, ids), labels)


# === Language-model baselines ===================================================================
def perplexity_from_log_likelihood(total_nll, num_tokens) -> float:
    """Per-token perplexity ``exp(total_nll / num_tokens)`` (natural-log likelihoods).

    Example:

    >>> perplexity_from_log_likelihood(3 * math.log(4.0), 3)
    4.0
    """
    if num_tokens <= 0:
        raise ValueError(f"Expected num_tokens > 0. Received: num_tokens={num_tokens}")
    return float(math.exp(total_nll / num_tokens))


class NGramLanguageModel:
    """A unigram or bigram language model over token ids: the perplexity baselines.

    Sequences are lists of token ids that already hold their start and end tokens;
    every token after the first is predicted (the first is given). Smoothing:

    * ``"add_k"``: ``P(w) = (c(w) + k) / (N + kV)``; for bigrams
      ``P(w | u) = (c(u, w) + k) / (c(u) + kV)``;
    * ``"interpolated"`` (Jelinek-Mercer): ``P(w) = λ·P_ML(w) + (1 − λ)/V``; for
      bigrams ``P(w | u) = λ·P_ML(w | u) + (1 − λ)·P(w)`` with that unigram (the
      unigram alone where ``u`` was never a context).

    Args:
        order: 1 (unigram) or 2 (bigram).
        smoothing: ``"add_k"`` or ``"interpolated"``.
        k: the add-k pseudo-count (1 is Laplace).
        interpolation: λ, the weight of the higher order (Jelinek-Mercer).
        vocabulary_size: V; ``None``: the largest id seen in `fit`, plus one.

    Example:

    >>> lm = NGramLanguageModel(order=1, k=0.0).fit([[0, 1, 2, 3, 4]])  # 1-4 equally often
    >>> lm.perplexity([[0, 4, 3, 2, 1]])
    4.0
    """

    def __init__(self, order=2, smoothing="add_k", k=1.0, interpolation=0.9, vocabulary_size=None):
        smoothings = ("add_k", "interpolated")
        for valid, expected, received in [
            (order in (1, 2), "order to be 1 or 2", f"order={order!r}"),
            (smoothing in smoothings, f"smoothing in {smoothings}", f"smoothing={smoothing!r}"),
            (k >= 0, "k >= 0", f"k={k}"),
            (0 <= interpolation < 1, "0 <= interpolation < 1", f"interpolation={interpolation}"),
        ]:
            if not valid:
                raise ValueError(f"Expected {expected}. Received: {received}")
        self.order = order
        self.smoothing = smoothing
        self.k = float(k)
        self.interpolation = float(interpolation)
        self.vocabulary_size = vocabulary_size
        self.unigram_counts = None

    def fit(self, sequences) -> NGramLanguageModel:
        """Counts the unigrams and bigrams of the predicted tokens; returns the model."""
        contexts, tokens = self._pairs(sequences)
        if not len(tokens):
            raise ValueError("Expected at least one sequence of two or more tokens. Received none")
        size = self.vocabulary_size
        self.unigram_counts = np.bincount(tokens, minlength=size).astype(np.float64)
        self.context_counts = np.bincount(contexts, minlength=size).astype(np.float64)
        self.bigram_keys, counts = np.unique(contexts * size + tokens, return_counts=True)
        self.bigram_counts = counts.astype(np.float64)
        return self

    def log_prob(self, sequences) -> np.ndarray:
        """The natural-log probability of each sequence's predicted tokens, float64 ``[N]``."""
        if self.unigram_counts is None:
            raise ValueError("Expected a fitted model. Call `fit(sequences)` first.")
        contexts, tokens = self._pairs(sequences)
        log_p = np.log(self._probabilities(contexts, tokens))
        owner = np.repeat(np.arange(len(sequences)), [max(len(s) - 1, 0) for s in sequences])
        return np.bincount(owner, weights=log_p, minlength=len(sequences))

    def perplexity(self, sequences) -> float:
        """``exp`` of the mean negative log-likelihood over every predicted token."""
        num_tokens = sum(max(len(s) - 1, 0) for s in sequences)
        return perplexity_from_log_likelihood(-float(np.sum(self.log_prob(sequences))), num_tokens)

    def _pairs(self, sequences):
        """(context, token) for every predicted token (each after the first); checks the ids."""
        sequences = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        empty = [np.zeros(0, np.int64)]
        ids = np.concatenate(empty + sequences)
        if self.vocabulary_size is None and len(ids):  # fitting: V from the data
            self.vocabulary_size = int(ids.max()) + 1
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocabulary_size):
            raise ValueError(
                f"Expected token ids in [0, {self.vocabulary_size}) (vocabulary_size). "
                f"Received: ids from {ids.min()} to {ids.max()}"
            )
        contexts = np.concatenate(empty + [s[:-1] for s in sequences if len(s) > 1])
        return contexts, np.concatenate(empty + [s[1:] for s in sequences if len(s) > 1])

    def _probabilities(self, contexts, tokens):
        size, counts = self.vocabulary_size, self.unigram_counts
        if self.smoothing == "add_k":
            unigram = (counts[tokens] + self.k) / (counts.sum() + self.k * size)
        else:
            unigram = self.interpolation * counts[tokens] / counts.sum()
            unigram += (1.0 - self.interpolation) / size
        if self.order == 1:
            return unigram
        keys = contexts * size + tokens
        at = np.clip(np.searchsorted(self.bigram_keys, keys), 0, len(self.bigram_keys) - 1)
        pair_counts = np.where(self.bigram_keys[at] == keys, self.bigram_counts[at], 0.0)
        context_counts = self.context_counts[contexts]
        if self.smoothing == "add_k":
            return (pair_counts + self.k) / (context_counts + self.k * size)
        lam = np.where(context_counts > 0, self.interpolation, 0.0)
        return lam * pair_counts / np.maximum(context_counts, 1.0) + (1.0 - lam) * unigram


# === Diversity ==================================================================================

_WORD = re.compile(r"[\w'-]+|[^\w\s]")


def _as_text(text) -> str:
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def split_words(text) -> list[str]:
    """Lower-cased words with punctuation split off (hyphenated words stay whole).

    Example:

    >>> split_words("A plus sign, Red; size: (large)")
    ['a', 'plus', 'sign', ',', 'red', ';', 'size', ':', '(', 'large', ')']
    """
    return _WORD.findall(_as_text(text).lower())


def _ngrams(words, n):
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts, n) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams, over all texts
    (`split_words`; n-grams never cross texts). 0 when there are no n-grams.

    Example:

    >>> distinct_n(["a red star", "a red heart"], 2)  # (a red) twice, (red star), (red heart)
    0.75
    """
    if n < 1:
        raise ValueError(f"Expected n >= 1. Received: n={n}")
    grams = [g for text in texts for g in _ngrams(split_words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _bleu(words, best_count, reference_lengths, max_order):
    """Sentence BLEU (see `self_bleu`); ``best_count(n-gram)``: its largest reference count."""
    if not words or not len(reference_lengths):
        return 0.0
    log_precision = 0.0
    for n in range(1, max_order + 1):
        counts = collections.Counter(_ngrams(words, n))
        matches = sum(min(c, best_count(g)) for g, c in counts.items())
        total = sum(counts.values())
        if n == 1 and matches == 0:
            return 0.0
        log_precision += math.log(matches / total if n == 1 else (matches + 1) / (total + 1))
    lengths = np.asarray(reference_lengths)
    closest = lengths[np.lexsort((lengths, np.abs(lengths - len(words))))[0]]
    return float(math.exp(min(0.0, 1.0 - closest / len(words)) + log_precision / max_order))


def self_bleu(texts, max_order=4, sample=None, seed=0) -> float:
    """Self-BLEU (Zhu et al. 2018): the mean BLEU of each text against all the others.

    Sentence BLEU on `split_words`: the geometric mean of the clipped n-gram
    precisions of orders 1 to ``max_order`` times the brevity penalty
    ``min(1, exp(1 − r/c))`` (``c`` the text's length, ``r`` the closest reference
    length, the shorter on ties); orders above 1 are add-1 smoothed,
    ``(matches + 1) / (n-grams + 1)`` (Lin and Och 2004), so a short text is not
    zeroed by a missing 4-gram. 1 for identical texts, 0 for texts sharing no word;
    lower is more diverse. ``sample``: score only this many texts, drawn with
    ``seed`` (each still against all the others).

    Example:

    >>> self_bleu(["a red star"] * 3), self_bleu(["red star", "blue heart"])
    (1.0, 0.0)
    """
    words = [split_words(t) for t in texts]
    if len(words) < 2:
        raise ValueError(f"Expected at least two texts. Received: {len(words)}")
    # Per n-gram, its two largest counts and the text with the largest: the largest
    # count among the *other* texts without a quadratic loop.
    top = {}
    for i, w in enumerate(words):
        grams = collections.Counter(g for n in range(max_order) for g in _ngrams(w, n + 1))
        for g, c in grams.items():
            first, owner, second = top.get(g, (0, -1, 0))
            top[g] = (c, i, first) if c > first else (first, owner, max(second, c))
    lengths = np.array([len(w) for w in words])
    chosen = np.arange(len(words))
    if sample is not None and sample < len(words):
        chosen = np.sort(np.random.default_rng(seed).choice(len(words), sample, replace=False))
    scores = []
    for i in chosen:

        def best_count(gram, i=i):
            first, owner, second = top.get(gram, (0, -1, 0))
            return second if owner == i else first

        scores.append(_bleu(words[i], best_count, np.delete(lengths, i), max_order))
    return float(np.mean(scores))


# === Attribute mentions =========================================================================
def _phrase_table(attributes, synonyms):
    """phrase → {(attribute, class id)}, and one regex matching any phrase, longest first."""
    attributes = check_attributes(attributes)
    synonyms = attribute_synonyms() if synonyms is None else synonyms
    table = collections.defaultdict(set)
    for name, classes in attributes.items():
        if isinstance(classes, int):
            raise ValueError(f"Expected class names for attribute {name!r}. Received: {classes}")
        for index, cls in enumerate(classes):
            for phrase in [cls, *synonyms.get(name, {}).get(cls, [])]:
                table[" ".join(phrase.lower().split())].add((name, index))
    phrases = sorted(table, key=lambda p: (-len(p), p))
    alternatives = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases)
    # Word boundaries that also treat "-" as part of a word, and an optional plural.
    pattern = re.compile(rf"(?<![\w-])({alternatives})(?:e?s)?(?![\w-])")
    return attributes, table, pattern


def _mentions(text, attributes, table, pattern):
    found = {name: set() for name in attributes}
    for match in pattern.finditer(_as_text(text).lower()):
        for name, index in table[" ".join(match.group(1).split())]:
            found[name].add(index)
    return {name: sorted(ids) for name, ids in found.items()}


def mentioned_attributes(text, attributes, synonyms=None) -> dict[str, list[int]]:
    """Which classes of each attribute a text names: ``{attribute: sorted class ids}``.

    A class is named by its class name, any of its ``synonyms`` phrases, or their
    plural (``+s``/``+es``), as whole words (``"blue"`` is not in ``"blueish"``);
    longer phrases win (``"plus sign"`` is one mention, not ``"plus"`` and more).

    ``attributes``: ``{attribute: [class names]}`` (``data.metadata.attributes``);
    ``synonyms``: ``{attribute: {class name: [phrases]}}`` besides the class names
    (``None``: the shapes benchmark's, `mmrec.data.synthetic.attribute_synonyms`).

    Example:

    >>> attributes = {"shape": ["star", "cross"], "colour": ["red", "blue"]}
    >>> mentioned_attributes("Two scarlet plus signs and a blueish star", attributes)
    {'shape': [0, 1], 'colour': [0]}
    """
    return _mentions(text, *_phrase_table(attributes, synonyms))


# === Explanations ===============================================================================

_EXPLANATION = re.compile(r"^\s*you often pick\s+(.*?)\s*;\s*this is\s+(.*?)\s*\.?\s*$", re.I)


def explanation_faithfulness(
    explanations, history_labels, item_labels, attributes, synonyms=None
) -> dict[str, float]:
    """How many explanations say only true things about the user's history and the item.

    Well-formed: "you often pick <history clause>; this is <item clause>". The
    history clause is faithful when every class it names (`mentioned_attributes`,
    with ``synonyms``) is in the user's history, the item clause when every class it
    names is the item's; a clause naming nothing is vacuously faithful, so
    ``specific`` is the share whose both clauses name a class.

    ``history_labels``: per explanation ``{attribute: class ids in the history}``
    (a named class of an attribute missing there is unfaithful); ``item_labels``:
    ``{attribute: class ids [N]}``; ``attributes``: ``{attribute: [class names]}``.
    Returns the shares (over all explanations; malformed ones are unfaithful)
    ``faithful``, ``history_clause_faithful``, ``item_clause_faithful``,
    ``malformed`` and ``specific``.
    """
    attributes, table, pattern = _phrase_table(attributes, synonyms)
    lengths = {len(explanations), len(history_labels), *map(len, item_labels.values())}
    if not len(explanations) or len(lengths) > 1:
        raise ValueError(
            "Expected a non-empty list of explanations and labels of the same length. Received:"
            f" {len(explanations)} explanations, {len(history_labels)} histories, item labels "
            f"{ {n: len(v) for n, v in item_labels.items()} }"
        )
    flags = np.zeros((len(explanations), 4), bool)  # history ok, item ok, malformed, specific
    for i, text in enumerate(explanations):
        match = _EXPLANATION.match(_as_text(text))
        if not match or not match.group(1) or not match.group(2):
            flags[i, 2] = True
            continue
        history = _mentions(match.group(1), attributes, table, pattern)
        item = _mentions(match.group(2), attributes, table, pattern)
        present = {n: set(np.ravel(list(v)).tolist()) for n, v in history_labels[i].items()}
        item_ids = {n: int(np.asarray(v)[i]) for n, v in item_labels.items()}
        flags[i, 0] = all(set(ids) <= present.get(n, set()) for n, ids in history.items())
        flags[i, 1] = all(set(ids) <= {item_ids.get(n)} for n, ids in item.items())
        flags[i, 3] = any(history.values()) and any(item.values())
    return {
        "faithful": float(np.mean(flags[:, 0] & flags[:, 1])),
        "history_clause_faithful": float(np.mean(flags[:, 0])),
        "item_clause_faithful": float(np.mean(flags[:, 1])),
        "malformed": float(np.mean(flags[:, 2])),
        "specific": float(np.mean(flags[:, 3])),
    }


# === Reports ====================================================================================
def text_personalisation_report(judge, data, texts, user_ids, targets) -> dict:
    """Hit-rates of generated texts next to the references that make them readable.

    As `personalisation_report`, for ``texts`` generated for ``user_ids``
    (``np.repeat(test_users, k)``); ``targets``: the test users' own held-out items.
    Returns ``hit_attributes``, ``hit_rate`` (judged texts), ``hit_rate_held_out_items``
    (the targets' real descriptions, judged; ``..._true_labels``: their labels),
    ``hit_rate_random_items`` (the base rate) and ``hit_rate_<attribute>`` for every
    preference attribute (judged texts, that attribute alone).
    """
    user_ids, targets = np.asarray(user_ids), np.asarray(targets)
    if not len(targets) or len(user_ids) != len(texts) or len(user_ids) % len(targets):
        raise ValueError(
            "Expected one user id per text and k texts per target (len(user_ids) == "
            f"len(texts) == k * len(targets)). Received: {len(texts)} texts, "
            f"{len(user_ids)} user ids, {len(targets)} targets"
        )
    strong = list(data.info.strong_preferences)
    users, catalogue = data.users(), data.catalogue()
    predicted = judge.predict_attributes(texts)
    target_users = user_ids[:: len(user_ids) // len(targets)]
    judged_targets = judge.predict_attributes(tf.gather(catalogue.texts, targets))
    true_targets = {name: catalogue.labels[name][targets] for name in strong}

    def rate(labels, owners, names=strong):
        return float(np.mean(preference_hits(labels, owners, users, names)))

    report = {
        "hit_attributes": strong,
        "hit_rate": rate(predicted, user_ids),
        "hit_rate_held_out_items": rate(judged_targets, target_users),
        "hit_rate_held_out_items_true_labels": rate(true_targets, target_users),
        "hit_rate_random_items": random_item_hit_rate(catalogue, target_users, users, strong),
    }
    for name in data.info.user_preferences:
        if name in predicted:
            report[f"hit_rate_{name}"] = rate(predicted, user_ids, [name])
    return report


def evaluate_text_generation(judge, texts, requested, reference_texts=None) -> dict:
    """Scores generated texts: the judge's conditional accuracy and their diversity.

    ``requested``: ``{attribute: ids}`` (or ``label_<attribute>`` keys), one per text.
    Returns ``conditional_accuracy`` (per attribute), ``distinct_1``, ``distinct_2``,
    ``self_bleu``, ``num_texts``, and with ``reference_texts`` (e.g. the items' real
    descriptions) their ``reference_distinct_1``/``_2`` and ``reference_self_bleu``.
    """
    sets = {"": texts} if reference_texts is None else {"": texts, "reference_": reference_texts}
    sets = {k: [_as_text(t) for t in np.ravel(v)] for k, v in sets.items()}
    report = {"conditional_accuracy": judge.accuracy(sets[""], requested)}
    for prefix, values in sets.items():
        report[f"{prefix}distinct_1"] = distinct_n(values, 1)
        report[f"{prefix}distinct_2"] = distinct_n(values, 2)
        report[f"{prefix}self_bleu"] = self_bleu(values) if len(values) > 1 else float("nan")
    report["num_texts"] = len(sets[""])
    return report
