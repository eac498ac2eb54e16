"""mmrec.data: TFRecord datasets, checked tf.data pipelines and the embedded benchmarks.

`load(path)` opens a dataset folder; `write_shapes` generates the shapes benchmark;
`import_tables` / `import_movielens` bring your own catalogue and interactions
(docs/your_data.md). Nothing here knows about models.
"""

from mmrec.data.fixtures import write_movielens_layout
from mmrec.data.importer import Columns, ImportOptions, import_summary, import_tables
from mmrec.data.media import MediaError
from mmrec.data.movielens import import_movielens
from mmrec.data.pipeline import Catalogue, MultimodalDataset, load
from mmrec.data.records import verify_checksums
from mmrec.data.schema import (
    PAD_ID,
    SCHEMA_VERSION,
    ChecksumError,
    CorruptRecordError,
    DataError,
    DatasetInfo,
    SchemaError,
)
from mmrec.data.synthetic import ShapesConfig, write_shapes
from mmrec.data.tfrecord import DatasetWriter

__all__ = [
    "PAD_ID",
    "SCHEMA_VERSION",
    "Catalogue",
    "ChecksumError",
    "Columns",
    "CorruptRecordError",
    "DataError",
    "DatasetInfo",
    "DatasetWriter",
    "ImportOptions",
    "MediaError",
    "MultimodalDataset",
    "SchemaError",
    "ShapesConfig",
    "import_movielens",
    "import_summary",
    "import_tables",
    "load",
    "verify_checksums",
    "write_movielens_layout",
    "write_shapes",
]
