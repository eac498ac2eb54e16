"""The HTML gallery: input checks, atomic and deterministic writing, and the page as a real
headless Chromium shows it (images decoded, sounds playable, text escaped, ✓/✗ right)."""

import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from mmrec.training.gallery import write_gallery

SAMPLE_RATE = 16000
COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}
# A description that must show literally, not as markup.
TRICKY_TEXT = "a <b>bold</b> & 'quoted' star"


def square(colour, size=32):
    """A solid square of `colour` on white."""
    image = np.full((size, size, 3), 255, np.uint8)
    image[size // 4 : -size // 4, size // 4 : -size // 4] = COLOURS[colour]
    return image


def tone(frequency, seconds=0.5):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def item(colour, shape, text, verdicts):
    return {
        "image": square(colour),
        "text": text,
        "audio": tone(220 * (1 + list(COLOURS).index(colour))),
        "attributes": {"shape": shape, "colour": colour},
        "verdicts": verdicts,
    }


def make_users():
    """2 users × 2 items; 3 of the 4 items have every judge agreeing on colour."""
    return [
        {
            "user_id": 0,
            "history": [{"item_id": 17, "image": square("red", 16)}],
            "items": [
                item(
                    "red",
                    "star",
                    TRICKY_TEXT,
                    {
                        "image": {"shape": "star", "colour": "red"},
                        "text": {"shape": "star", "colour": "red"},
                        "audio": {"colour": "red"},
                    },
                ),
                item(
                    "green",
                    "circle",
                    "a green circle",
                    {
                        "image": {"shape": "square", "colour": "green"},
                        "text": {"shape": "circle", "colour": "green"},
                        "audio": {"colour": "blue"},
                    },
                ),
            ],
        },
        {
            "user_id": 7,
            "history": [
                {"item_id": 3, "image": square("blue", 16)},
                {"item_id": 42, "image": square("green", 16)},
            ],
            "items": [
                item(
                    "blue",
                    "triangle",
                    "a blue triangle",
                    {
                        "image": {"shape": "triangle", "colour": "blue"},
                        "text": {"shape": "triangle", "colour": "blue"},
                        "audio": {"colour": "blue"},
                    },
                ),
                # No audio judge here: its column shows no verdict.
                item(
                    "red",
                    "square",
                    "a red square",
                    {
                        "image": {"shape": "square", "colour": "red"},
                        "text": {"shape": "star", "colour": "red"},
                    },
                ),
            ],
        },
    ]


def expected_marks(users):
    """(user_id, item index, attribute, modality) → "✓" or "✗"."""
    marks = {}
    for user in users:
        for k, it in enumerate(user["items"]):
            for modality, read in it["verdicts"].items():
                for name, value in read.items():
                    agree = value == it["attributes"][name]
                    marks[(user["user_id"], k, name, modality)] = "✓" if agree else "✗"
    return marks


def listing(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


# --- Writing, without a browser -----------------------------------------------------------


def test_writes_page_and_media(tmp_path):
    path = write_gallery(tmp_path / "gallery", make_users(), title="Shapes <test>")
    folder = tmp_path / "gallery"
    assert path == str(folder / "index.html")
    assert listing(folder) == [
        "index.html",
        "media/user0_history0.png",
        "media/user0_item0.png",
        "media/user0_item0.wav",
        "media/user0_item1.png",
        "media/user0_item1.wav",
        "media/user7_history0.png",
        "media/user7_history1.png",
        "media/user7_item0.png",
        "media/user7_item0.wav",
        "media/user7_item1.png",
        "media/user7_item1.wav",
    ]
    image = tf.io.decode_png(tf.io.read_file(str(folder / "media/user0_item0.png"))).numpy()
    np.testing.assert_array_equal(image, square("red"))
    sound = tf.audio.decode_wav(tf.io.read_file(str(folder / "media/user0_item0.wav")))
    assert int(sound.sample_rate) == SAMPLE_RATE
    np.testing.assert_allclose(sound.audio.numpy()[:, 0], tone(220), atol=1 / 32768)
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert "<title>Shapes &lt;test&gt;</title>" in page
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; &#x27;quoted&#x27; star" in page
    assert "<b>" not in page
    assert "http://" not in page and "https://" not in page  # works offline


def test_same_input_same_bytes_and_rewrite_replaces(tmp_path):
    users = make_users()
    write_gallery(tmp_path / "a", users)
    write_gallery(tmp_path / "b", users)
    files = listing(tmp_path / "a")
    assert files == listing(tmp_path / "b")
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()

    write_gallery(tmp_path / "a", users[:1])  # a previous gallery is replaced
    assert not any("user7" in name for name in listing(tmp_path / "a"))
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]  # no partial or old folders left


def test_refuses_to_replace_other_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="new, empty or a previous gallery.*notes.txt"):
        write_gallery(tmp_path, make_users())
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def with_change(path, value=None, delete=False):
    """make_users() with the value at `path` (keys and indices) replaced or deleted."""
    users = make_users()
    parent = users
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return users


ITEM = (0, "items", 1)


@pytest.mark.parametrize(
    "users, message",
    [
        (
            with_change((*ITEM, "image"), square("red").astype(np.float32)),
            r"users\[0\]\['items'\]\[1\]\['image'\] to be a uint8 image of shape \[H, W, 3\]. "
            r"Received: dtype=float32",
        ),
        (
            with_change((0, "history", 0, "image"), np.zeros((16, 16), np.uint8)),
            r"users\[0\]\['history'\]\[0\]\['image'\].*Received: dtype=uint8, shape=\(16, 16\)",
        ),
        (
            with_change((*ITEM, "audio"), 3 * tone(440)),
            r"users\[0\]\['items'\]\[1\]\['audio'\] to have samples in \[-1, 1\]. "
            r"Received: values in \[-1.5, 1.5\]",
        ),
        (
            with_change((*ITEM, "audio"), np.full(800, np.nan, np.float32)),
            r"\['audio'\] to have samples in \[-1, 1\]. Received: values in \[nan, nan\]",
        ),
        (
            with_change((*ITEM, "audio"), np.stack([tone(440)] * 2, axis=1)),
            r"\['audio'\] to be a 1-D float waveform.*shape=\(8000, 2\)",
        ),
        (
            with_change((*ITEM, "audio"), (tone(440) * 32767).astype(np.int16)),
            r"\['audio'\] to be a 1-D float waveform.*dtype=int16",
        ),
        (
            with_change((*ITEM, "text"), delete=True),
            r"users\[0\]\['items'\]\[1\] to have the keys .*without \['text'\]",
        ),
        (with_change((1, "user_id"), 0), r"each user once. Received: user_id=0"),
        (
            with_change((*ITEM, "verdicts", "smell"), {"colour": "red"}),
            r"modalities of .* among \('image', 'text', 'audio'\). Received: 'smell'",
        ),
        (
            with_change((*ITEM, "verdicts", "image", "size"), "large"),
            r"among the sampled ones \['colour', 'shape'\]. Received: \['size'\]",
        ),
        ([], "non-empty list of dicts"),
    ],
    ids=[
        "float-image",
        "2d-thumbnail",
        "loud-audio",
        "nan-audio",
        "stereo-audio",
        "int-audio",
        "missing-text",
        "duplicate-user",
        "unknown-modality",
        "unknown-attribute",
        "no-users",
    ],
)
def test_bad_input_raises_and_writes_nothing(tmp_path, users, message):
    with pytest.raises(ValueError, match=message):
        write_gallery(tmp_path / "gallery", users)
    assert os.listdir(tmp_path) == []


# --- The page in a real browser -----------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver (Debian's `chromium` and `chromium-driver`)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail(
            "The gallery tests need headless Chromium: install it with "
            "`apt-get install chromium chromium-driver` (.ci/run does). "
            f"Found: chromium={chromium}, chromedriver={driver}",
            pytrace=False,
        )
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail("The gallery tests need selenium: pip install -e '.[dev]'.", pytrace=False)
    options = webdriver.ChromeOptions()
    # Both paths given: Selenium Manager downloads nothing (CI has no internet).
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1200,1600",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    yield session
    session.quit()


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory):
    """The gallery of make_users(), open in the browser, with its sounds' metadata loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    users = make_users()
    path = write_gallery(tmp_path_factory.mktemp("gallery") / "gallery", users, title="Shapes")
    browser.get(f"file://{path}")
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script(
            "const a = [...document.querySelectorAll('audio')];"
            "return a.length > 0 && a.every(x => x.readyState >= 1 || x.error);"
        )
    )
    return browser, users


def test_browser_loads_without_console_errors(page):
    browser, _ = page
    assert browser.title == "Shapes"
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


def test_browser_decodes_every_image(page):
    browser, users = page
    images = browser.execute_script(
        "return [...document.images].map(i => "
        "[i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight, "
        "getComputedStyle(i).imageRendering]);"
    )
    sizes = {
        f"media/user{u['user_id']}_history{i}.png": 16
        for u in users
        for i in range(len(u["history"]))
    }
    sizes |= {f"media/user{u['user_id']}_item{k}.png": 32 for u in users for k in range(2)}
    assert sorted(src for src, *_ in images) == sorted(sizes)
    for src, complete, width, height, rendering in images:
        assert complete and (width, height) == (sizes[src], sizes[src]), src
        assert rendering in ("pixelated", "crisp-edges"), src


def test_browser_reads_every_sound(page):
    browser, _ = page
    sounds = browser.execute_script(
        "return [...document.querySelectorAll('audio')].map(a => "
        "[a.getAttribute('src'), a.error && a.error.code, a.readyState, a.duration, a.controls]);"
    )
    assert len(sounds) == 4
    for src, error, ready, duration, controls in sounds:
        assert error is None and ready >= 1 and controls, src
        assert math.isfinite(duration) and abs(duration - 0.5) < 0.01, (src, duration)


def test_browser_shows_texts_literally(page):
    from selenium.webdriver.common.by import By

    browser, users = page
    texts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "p.text")]
    assert texts == [it["text"] for u in users for it in u["items"]]
    assert browser.find_elements(By.CSS_SELECTOR, "p.text b") == []  # not parsed as markup
    body = browser.find_element(By.TAG_NAME, "body").text
    for word in ("shape", "colour", "item 17", "item 42", "User 7", "image judge", "audio judge"):
        assert word in body


def test_browser_marks_match_verdicts(page):
    browser, users = page
    cells = browser.execute_script(
        "return [...document.querySelectorAll('article.item')].flatMap((card, i) => "
        "[...card.querySelectorAll('td[data-modality]:not(.missing)')].map(td => "
        "[i, td.dataset.attribute, td.dataset.modality, td.querySelector('.mark').textContent]));"
    )
    marks = {
        (users[card // 2]["user_id"], card % 2, attribute, modality): mark
        for card, attribute, modality, mark in cells
    }
    assert marks == expected_marks(users)
    assert sorted(set(marks.values())) == ["✓", "✗"]
    summary = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('.summary tr[data-attribute]')]"
        ".map(tr => [tr.dataset.attribute, [...tr.cells].slice(1).map(c => c.textContent)]));"
    )
    # Colour: every judge read it right in 3 of 4 items (the audio judge missed one).
    assert summary == {
        "shape": ["3/4 (75%)", "3/4 (75%)", "—", "2/4 (50%)"],
        "colour": ["4/4 (100%)", "4/4 (100%)", "2/3 (67%)", "3/4 (75%)"],
    }


def test_browser_screenshot(page, tmp_path):
    browser, _ = page
    path = tmp_path / "gallery.png"
    assert browser.save_screenshot(str(path))
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    shot = tf.io.decode_png(data, channels=3).numpy()
    # The pixelated red square is drawn with its exact colour.
    assert (shot.reshape(-1, 3) == COLOURS["red"]).all(axis=1).sum() > 1000
