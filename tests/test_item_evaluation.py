"""Cross-modal consistency of generated items: the arithmetic of `consistency_report`."""

import numpy as np

from mmrec.evaluation.items import consistency_report


def test_consistency_counts_agreement_across_the_modalities_that_read_an_attribute():
    sampled = {"colour": np.array([0, 1, 2, 3]), "size": np.array([1, 1, 1, 1])}
    verdicts = {
        "image": {"colour": np.array([0, 1, 2, 0]), "size": np.array([1, 1, 0, 1])},
        "text": {"colour": np.array([0, 1, 1, 0]), "size": np.array([1, 1, 1, 1])},
        "audio": {"colour": np.array([0, 1, 2, 0])},  # a sound has no size
    }
    report = consistency_report(verdicts, sampled)
    # Colour: rows 0, 1 and 3 agree in all three (row 3 agrees on the wrong colour).
    assert report["consistency_colour"] == 0.75
    assert report["consistency_colour_image_audio"] == 1.0
    assert report["consistency_colour_image_text"] == 0.75
    assert report["consistency_size"] == 0.75  # image and text only
    assert "consistency_size_image_audio" not in report
    assert report["accuracy_audio_colour"] == 0.75 and report["accuracy_text_colour"] == 0.5
    # Only colour is read by all three; rows 0 and 1 have every judge on the sampled colour.
    assert report["shared_attributes"] == ["colour"]
    assert report["all_agree_with_sampled"] == 0.5


def test_an_attribute_one_modality_reads_has_accuracy_but_no_consistency():
    sampled = {"pattern": np.array([2, 2])}
    verdicts = {"image": {"pattern": np.array([2, 0])}, "audio": {}}
    report = consistency_report(verdicts, sampled)
    assert report["accuracy_image_pattern"] == 0.5
    assert "consistency_pattern" not in report
    assert report["shared_attributes"] == [] and report["all_agree_with_sampled"] is None


def test_agreement_on_the_preferred_attributes_counts_every_judge_that_reads_them():
    sampled = {"colour": np.array([0, 1, 2, 3]), "size": np.array([1, 1, 1, 1])}
    verdicts = {
        "image": {"colour": np.array([0, 1, 2, 3]), "size": np.array([1, 0, 1, 1])},
        "text": {"colour": np.array([0, 1, 2, 0]), "size": np.array([1, 1, 1, 0])},
        "audio": {"colour": np.array([0, 1, 2, 3])},  # no size: it does not count against
    }
    # Colour: row 3's text is wrong; size: row 1's image and row 3's text are wrong.
    assert consistency_report(verdicts, sampled, ["colour"])["all_agree_on_preferred"] == 0.75
    report = consistency_report(verdicts, sampled, ["colour", "size"])
    assert report["preferred_attributes"] == ["colour", "size"]
    assert report["all_agree_on_preferred"] == 0.5
    assert "all_agree_on_preferred" not in consistency_report(verdicts, sampled)
