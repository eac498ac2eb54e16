"""The MovieLens CSV layout → an mmrec dataset (`mmrec data import --format movielens`).

A MovieLens folder (ml-latest-small, ml-25m, ml-32m, …) holds `movies.csv`
(`movieId,title,genres`, genres separated by "|"), `ratings.csv`
(`userId,movieId,rating,timestamp`) and, optionally, `tags.csv`
(`userId,movieId,tag,timestamp`), each with that header row. The import is
`mmrec.data.import_tables` with these columns:

* item text: the title, the genres and the movie's most common tags —
  "Toy Story (1995). Adventure, Animation, Children. Tags: pixar, fun.";
* attribute `genre` (`label_genre`): the *first* genre listed (the schema holds
  one label per attribute; all genres are in the text);
* interactions: the ratings of at least `ImportOptions.min_rating` (all by
  default); tags are text, not interactions.
"""

from __future__ import annotations

import collections
import os

import pyarrow as pa

from mmrec.data import schema
from mmrec.data.importer import Columns, ImportOptions, import_tables
from mmrec.data.tables import Table, read_table

NO_GENRES = "(no genres listed)"  # MovieLens's value for a movie without genres
COLUMNS = Columns(
    item_key="movieId",
    user_key="userId",
    timestamp="timestamp",
    rating="rating",
    text=("text",),
    attributes=("genre",),
    attribute_separator="|",
)


def import_movielens(
    out: str,
    path: str,
    options: ImportOptions | None = None,
    *,
    tags_per_item: int = 3,
    overwrite: bool = False,
    progress: bool = True,
    beam_pipeline_args: list[str] | None = None,
) -> schema.DatasetInfo:
    """Imports the MovieLens CSV layout in folder `path` into the dataset folder `out`.

    Args:
        out: the dataset folder to write.
        path: a folder with `movies.csv`, `ratings.csv` and optionally `tags.csv`.
        options: filters and split (`ImportOptions`); `min_rating=4.0` keeps the
            ratings of 4 stars and more.
        tags_per_item: how many of a movie's most common tags go into its text.
        beam_pipeline_args: run as an Apache Beam pipeline with these options
            (`import_tables`); the movie texts and their tags are made here first.

    Example:

    ```python
    import_movielens("tf_records/ml", "ml-latest-small", ImportOptions(min_rating=4.0))
    data = mmrec.data.load("tf_records/ml")
    data.item_keys()[:3]  # movieIds: ['1', '2', '3']
    ```
    """
    movies_path = os.path.join(path, "movies.csv")
    ratings_path = os.path.join(path, "ratings.csv")
    for required in (movies_path, ratings_path):
        if not os.path.exists(required):
            raise FileNotFoundError(
                f"Expected the MovieLens layout in '{path}' (movies.csv, ratings.csv, optional "
                f"tags.csv). Received: no {os.path.basename(required)}"
            )
    movies = read_table(movies_path, text_columns=["movieId", "title", "genres"], what="movies")
    keys = movies.strings("movieId", "the MovieLens layout")
    titles = movies.strings("title", "the MovieLens layout")
    genres = movies.strings("genres", "the MovieLens layout")
    tags = _top_tags(os.path.join(path, "tags.csv"), tags_per_item)
    texts = [
        describe(title, genre, tags.get(key, [])) for key, title, genre in zip(keys, titles, genres)
    ]
    table = pa.table({"movieId": keys, "text": texts, "genre": genres})
    return import_tables(
        out,
        Table(table, movies.source, movies.format),
        ratings_path,
        COLUMNS,
        options,
        overwrite=overwrite,
        progress=progress,
        beam_pipeline_args=beam_pipeline_args,
    )


def describe(title: str | None, genres: str | None, tags: list[str]) -> str:
    """A movie's text: "Title (year). Genre, Genre. Tags: tag, tag." (empty parts left out)."""
    listed = [g for g in (genres or "").split("|") if g.strip() and g != NO_GENRES]
    parts = [(title or "").strip(), ", ".join(listed)]
    if tags:
        parts.append("Tags: " + ", ".join(tags))
    return " ".join(f"{p}." if not p.endswith(".") else p for p in parts if p)


def _top_tags(path: str, k: int) -> dict[str, list[str]]:
    """movieId → its `k` most common tags (lower-cased; ties in alphabetical order)."""
    if k <= 0 or not os.path.exists(path):
        return {}
    table = read_table(path, text_columns=["userId", "movieId", "tag"], what="tags")
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    movie_ids = table.strings("movieId", "the MovieLens layout")
    for movie, tag in zip(movie_ids, table.strings("tag", "the MovieLens layout")):
        tag = " ".join((tag or "").lower().split())
        if movie is not None and tag:
            counts[movie][tag] += 1
    return {
        m: [t for t, _ in sorted(c.items(), key=lambda x: (-x[1], x[0]))[:k]]
        for m, c in counts.items()
    }
