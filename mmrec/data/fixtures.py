"""Generated stand-ins for real data: a MovieLens-layout folder, for tests, docs and notebooks.

MovieLens' licence forbids redistributing it, so nothing of it ships with mmrec;
`write_movielens_layout` writes CSV files in the same layout (header rows,
quoting, "|"-separated genres, half-star ratings, epoch-second timestamps) with
made-up movies and users who prefer some genres, so that a recommender has
something to learn. The same seed writes the same bytes.
"""

from __future__ import annotations

import csv
import os

import numpy as np

GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_ADJECTIVES = ("Silent", "Red", "Last", "Hidden", "Golden", "Broken", "Lost", "Wild", "Secret")
_NOUNS = ("Planet", "River", "Detective", "Summer", "Kingdom", "Machine", "Garden", "Voyage")
_TAGS = ("twist ending", "funny", "atmospheric", "visually appealing", "slow", "classic", "dark")


def write_movielens_layout(
    folder: str, num_movies: int = 30, num_users: int = 20, *, seed: int = 0, tags: bool = True
) -> str:
    """Writes `movies.csv`, `ratings.csv` (and `tags.csv`) in the MovieLens layout.

    Movies get 1-3 genres (one gets MovieLens' "(no genres listed)"), titles with a
    year, some with commas, quotes or accents. Each user favours two genres and
    rates 6-15 distinct movies, the favoured ones more often and higher; a few
    ratings share a timestamp (ties). Two "new releases" are only ever some users'
    latest rating, so a leave-last-out split has cold-item targets. Returns `folder`.

    Example:

    ```python
    write_movielens_layout("/tmp/ml")
    mmrec.data.import_movielens("/tmp/ml-data", "/tmp/ml")
    ```
    """
    if num_movies < 16 or num_users < 1:
        raise ValueError(
            f"Expected num_movies >= 16 and num_users >= 1. Received: num_movies={num_movies}, "
            f"num_users={num_users}"
        )
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    movie_ids = np.sort(rng.choice(np.arange(1, 10 * num_movies), num_movies, replace=False))
    movie_genres = []
    for _ in range(num_movies):
        chosen = rng.choice(len(GENRES), int(rng.integers(1, 4)), replace=False)
        movie_genres.append(sorted(GENRES[g] for g in chosen))
    movie_genres[-1] = []  # "(no genres listed)"
    titles = [_title(rng, m) for m in range(num_movies)]
    _write_csv(
        os.path.join(folder, "movies.csv"),
        ["movieId", "title", "genres"],
        [
            [int(i), t, "|".join(g) or "(no genres listed)"]
            for i, t, g in zip(movie_ids, titles, movie_genres)
        ],
    )

    ratings, tag_rows = [], []
    new_releases = [num_movies - 3, num_movies - 2]  # only ever rated last: cold targets
    for user in range(1, num_users + 1):
        favourite = set(rng.choice(len(GENRES), 2, replace=False).tolist())
        likes = np.array(
            [any(GENRES.index(g) in favourite for g in genres) for genres in movie_genres]
        )
        weights = np.where(likes, 6.0, 1.0)
        weights[new_releases] = 0.0
        count = int(rng.integers(6, min(15, num_movies - 2) + 1))
        seen = rng.choice(num_movies, count, replace=False, p=weights / weights.sum()).tolist()
        if rng.random() < 0.3:
            seen.append(new_releases[user % 2])
        time = int(rng.integers(1_000_000_000, 1_500_000_000))
        for m in seen:
            time += 0 if rng.random() < 0.15 else int(rng.integers(60, 86_400 * 30))
            stars = rng.normal(4.0 if likes[m] else 2.5, 0.8)
            rating = float(np.clip(np.round(stars * 2) / 2, 0.5, 5.0))
            ratings.append([user, int(movie_ids[m]), rating, time])
            if tags and rng.random() < 0.3:
                tag = _TAGS[(m + int(rng.integers(0, 2))) % len(_TAGS)]
                tag_rows.append([user, int(movie_ids[m]), tag, time + 5])
    ratings.sort(key=lambda r: (r[0], r[1]))  # the official files: by userId, then movieId
    _write_csv(
        os.path.join(folder, "ratings.csv"), ["userId", "movieId", "rating", "timestamp"], ratings
    )
    if tags:
        tag_rows.sort(key=lambda r: (r[0], r[1]))
        _write_csv(
            os.path.join(folder, "tags.csv"), ["userId", "movieId", "tag", "timestamp"], tag_rows
        )
    return folder


def _title(rng: np.random.Generator, index: int) -> str:
    year = int(rng.integers(1930, 2020))
    name = f"{_ADJECTIVES[rng.integers(len(_ADJECTIVES))]} {_NOUNS[rng.integers(len(_NOUNS))]}"
    if index % 7 == 3:
        name = f"{name}, The"  # MovieLens moves the article to the end, after a comma
    if index % 11 == 5:
        name = f'"{name}" Returns'
    if index % 13 == 8:
        name = f"Amélie's {name}"
    return f"{name} ({year})"


def _write_csv(path: str, header: list[str], rows: list[list]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
