"""A layer's detections table as CSV or Parquet, streamed batch by batch.

Both writers take the batches of :func:`selectors.export_batches` (the table's columns plus any
:class:`selectors.ExtraColumn`, such as proofreading's verdicts) and hand out bytes as each batch
is written: a CSV batch is text, a Parquet batch one row group. Memory holds one batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.archives import StreamSink
from pipeline.detections import DETECTION_COLUMNS
from webapp.detections.selectors import INTEGER_COLUMNS, ColumnKind, ExtraColumn

MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
_ARROW_KINDS: dict[ColumnKind, pa.DataType] = {
    "string": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
}


def export_columns(extra: Sequence[ExtraColumn] = ()) -> list[str]:
    return [*DETECTION_COLUMNS, *(column.name for column in extra)]


def arrow_schema(extra: Sequence[ExtraColumn] = ()) -> pa.Schema:
    """Fixed column types (an all-empty batch must not change them): integers for ids, counts
    and voxel boxes, floats (nullable) for the rest, the extra columns' declared kinds."""
    fields = [
        pa.field(name, pa.int64() if name in INTEGER_COLUMNS else pa.float64())
        for name in DETECTION_COLUMNS
    ]
    fields += [pa.field(column.name, _ARROW_KINDS[column.kind]) for column in extra]
    return pa.schema(fields)


def csv_stream(batches: Iterable[pd.DataFrame], columns: Sequence[str]) -> Iterator[bytes]:
    """CSV with one header line (also for an empty table); missing values are empty cells."""
    header = True
    for frame in batches:
        yield frame.to_csv(index=False, header=header, columns=list(columns)).encode()
        header = False
    if header:
        yield pd.DataFrame(columns=list(columns)).to_csv(index=False).encode()


def parquet_stream(
    batches: Iterable[pd.DataFrame], extra: Sequence[ExtraColumn] = ()
) -> Iterator[bytes]:
    """Parquet, one row group per batch (an empty table is a valid file with the schema)."""
    schema = arrow_schema(extra)
    sink = StreamSink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema)
    try:
        for frame in batches:
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
            data = sink.take()
            if data:
                yield data
    finally:
        writer.close()
    yield sink.take()
