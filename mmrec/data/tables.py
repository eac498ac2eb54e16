"""Reading the tables of an import: CSV, Parquet or JSONL files (pyarrow), as typed columns.

Where it sits in the data flow: `mmrec.data.importer` reads the item and
interaction tables through `read_table`, then takes typed columns from them —
keys and texts as `str`, timestamps as int64 seconds, ratings as float — with
errors that name the file and the column. `Table.location(row)` names a row the
way an editor shows it (line of a CSV/JSONL file, row index of a Parquet file), so
a problem with one row can be found.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclasses.dataclass
class Table:
    """One input table and where it came from.

    Example:

    >>> import pyarrow as pa
    >>> table = read_table(pa.table({"sku": ["007", "x"], "when": ["2024-03-01", "2024-03-02"]}))
    >>> table.strings("sku", "--item-key")
    ['007', 'x']
    >>> table.timestamps("when", "--timestamp")[0].tolist()
    [1709251200, 1709337600]
    >>> table.location(1)
    'the table table, row 1'
    """

    data: pa.Table
    source: str  # the path as given, or a description of an in-memory table
    format: str  # "csv", "tsv", "parquet", "jsonl" or "table"

    @property
    def num_rows(self) -> int:
        return self.data.num_rows

    def location(self, row: int) -> str:
        """Where row `row` (0-based, data rows only) is: what a person looks for."""
        if self.format in ("csv", "tsv"):
            return f"{self.source}, line {row + 2}"  # line 1 is the header
        if self.format == "jsonl":
            return f"{self.source}, line {row + 1}"
        return f"{self.source}, row {row}"

    def column(self, name: str, flag: str) -> pa.ChunkedArray:
        if name not in self.data.column_names:
            raise ValueError(
                f"{self.source} has no column '{name}' (given by {flag}). "
                f"Received columns: {self.data.column_names}"
            )
        return self.data.column(name)

    def strings(self, name: str, flag: str) -> list[str | None]:
        """A column as `str` values (numbers become their decimal text); None where null."""
        column = self.column(name, flag)
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            raise ValueError(f"{self.source}: column '{name}' ({flag}) holds bytes; expected text.")
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        return column.to_pylist()

    def texts(self, names, template: str | None, flag: str) -> list[str] | None:
        """One text per row from the columns `names` (None without names): the non-empty
        cells joined with " ", or `template.format(**cells)` with empty cells as ""."""
        if not names:
            return None
        values = {c: [v or "" for v in self.strings(c, flag)] for c in names}
        if template is None:
            return [" ".join(v for v in row if v.strip()) for row in zip(*values.values())]
        return [
            template.format(**{c: values[c][row] for c in names}) for row in range(self.num_rows)
        ]

    def values(self, name: str, flag: str) -> list[str | bytes | None]:
        """A column as `str` (file paths) or `bytes` (embedded media); None where null."""
        column = self.column(name, flag)
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            return column.to_pylist()
        return self.strings(name, flag)

    def numbers(self, name: str, flag: str) -> np.ndarray:
        """A numeric column as float64 (NaN where null)."""
        column = self.column(name, flag)
        try:
            values = pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ValueError(
                f"{self.source}: expected numbers in column '{name}' ({flag}). "
                f"Received values of type {column.type}, e.g. {column[0]!r}"
            ) from None
        return values.to_numpy(zero_copy_only=False).astype(np.float64)

    def timestamps(self, name: str, flag: str) -> tuple[np.ndarray, np.ndarray]:
        """A time column as (int64 seconds since the epoch, UTC; bool mask of nulls).

        Accepts integers (seconds), floats (floored), timestamps and dates, and text
        holding either integers or ISO 8601 date-times.
        """
        column = self.column(name, flag)
        kind = column.type
        try:
            if pa.types.is_string(kind) or pa.types.is_large_string(kind):
                texts = column.to_pylist()
                seconds = [None if t is None or not t.strip() else parse_time(t) for t in texts]
                column = pa.chunked_array([pa.array(seconds, pa.int64())])
            elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
                column = pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
            elif pa.types.is_floating(kind):
                column = pc.cast(pc.floor(column), pa.int64())
            elif pa.types.is_integer(kind):
                column = pc.cast(column, pa.int64())
            else:
                raise ValueError(f"values of type {kind}")
        except (ValueError, pa.ArrowInvalid) as e:
            raise ValueError(
                f"{self.source}: expected timestamps in column '{name}' ({flag}): integer "
                f"seconds or ISO 8601 date-times. Received {e}"
            ) from None
        missing = column.is_null().to_numpy(zero_copy_only=False)
        values = column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        return values, missing


def parse_time(text: str) -> int:
    """`"1700000000"` or an ISO 8601 date(-time) → int seconds since the epoch (UTC).

    Example:

    >>> parse_time("1700000000"), parse_time("2024-03-01T10:00:00Z")
    (1700000000, 1709287200)
    """
    text = str(text).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"Expected a time as integer seconds or an ISO 8601 date-time. Received: {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp())


def table_format(path: str) -> str:
    name = os.path.basename(path).lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise ValueError(f"Expected a table file ending in one of {sorted(FORMATS)}. Received: {path}")


def read_table(source, *, text_columns=(), what: str = "table") -> Table:
    """Reads a CSV / TSV / Parquet / JSONL file (by its suffix), or wraps a `pyarrow.Table`
    or a pandas `DataFrame` (a `Table` passes through).

    `text_columns` are read from CSV as text even when they look numeric, so a key
    like "007" keeps its zeros (Parquet and JSONL carry their own types).
    """
    if isinstance(source, Table):
        return source
    if isinstance(source, pa.Table):
        return Table(source, f"the {what} table", "table")
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        return Table(pa.Table.from_pandas(source, preserve_index=False), f"the {what}", "table")
    path = os.fspath(source)
    if not os.path.exists(path):
        raise FileNotFoundError(f"The {what} file '{path}' does not exist.")
    fmt = table_format(path)
    try:
        if fmt in ("csv", "tsv"):
            import pyarrow.csv as csv

            data = csv.read_csv(
                path,
                parse_options=csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ","),
                convert_options=csv.ConvertOptions(
                    column_types={c: pa.string() for c in text_columns}
                ),
            )
        elif fmt == "parquet":
            import pyarrow.parquet as parquet

            data = parquet.read_table(path)
        else:
            import pyarrow.json as json

            data = json.read_json(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{path}: cannot be read as {fmt} ({e}).") from None
    return Table(data, path, fmt)
