"""mmrec.data: TFRecord datasets, checked tf.data pipelines and the embedded benchmarks.

`load(path)` opens a dataset folder; `write_shapes` generates the shapes benchmark.
Nothing here knows about models.
"""

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
    "CorruptRecordError",
    "DataError",
    "DatasetInfo",
    "DatasetWriter",
    "MultimodalDataset",
    "SchemaError",
    "ShapesConfig",
    "load",
    "verify_checksums",
    "write_shapes",
]
