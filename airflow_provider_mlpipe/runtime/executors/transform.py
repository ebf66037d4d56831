"""Transform: tf.Transform on Beam with the user's ``preprocessing_fn``, or the built-in tabular one.

The analyzers (vocabularies, means, variances) run over the analysis splits (default ``train``); every split is
then transformed with the same graph. Parquet is read by Beam, turned into the list-column Arrow layout of
``model_examples`` and fed to TFT through a ``TensorAdapterConfig`` derived from the schema, so missing values
reach ``preprocessing_fn`` as sparse tensors (or NaN in dense float features).

Outputs: ``transform_graph`` (``transform_fn/``, ``transformed_metadata/`` and the raw ``metadata/``) and
``transformed_examples`` (``Split-<split>/transformed-<shard>.tfrecord.gz``, gzipped ``tf.Example``).
With ``missing_values: sparse`` (the default) dense non-FLOAT schema features are read as sparse
(``schema_tables.relax_dense_features``), so a value missing in later data or in a serving request reaches
``preprocessing_fn`` instead of failing the parse; ``strict`` keeps the schema's shapes (TFX's behaviour). The raw
schema saved with the graph is the one TFT read, so serving parses the same way.

URI-native: Beam reads the Parquet files and writes the graph, its temp files and the transformed examples at
their own URIs (``gs://`` on a GCS root), so remote Beam workers reach all of them.

Without ``module_file`` the built-in tabular transform (``runtime/builtin``) runs on the spec's ``features`` and
``label``; its resolved configuration, with vocabulary sizes and classes, goes beside the graph as
``mlpipe_tabular.json`` for the built-in trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from airflow_provider_mlpipe.protocol import StageRequest
from airflow_provider_mlpipe.runtime.beam_options import pipeline_options
from airflow_provider_mlpipe.runtime.builtin import tabular_config
from airflow_provider_mlpipe.runtime.builtin.tabular_config import TabularConfig
from airflow_provider_mlpipe.runtime.context import ExecutorContext
from airflow_provider_mlpipe.runtime.io import example_io, schema_tables
from airflow_provider_mlpipe.runtime.training.user_modules import builtin_digest, module_digest
from airflow_provider_mlpipe.stages.transform import TransformParams
from airflow_provider_mlpipe.storage import join

log = logging.getLogger("mlpipe.runtime.transform")


def fingerprint(request: StageRequest, params: TransformParams) -> str:
    if params.builtin:
        return builtin_digest(params.model_dump(mode="json"))
    return module_digest(params.module_file, request.spec_dir)


def _arrow_schema(schema: Any) -> Any:
    import pyarrow as pa

    types = {1: pa.binary(), 2: pa.int64(), 3: pa.float32()}  # schema_pb2 BYTES, INT, FLOAT
    return pa.schema([(f.name, pa.large_list(types[f.type])) for f in schema.feature])


def _to_list_batch(table: Any, schema: Any) -> Any:
    return schema_tables.to_list_batch(table, schema)


def _encode(item: Any) -> list[bytes]:
    batch, _ = item
    return schema_tables.encode_examples(batch)


def _preprocessing_fn(
    ctx: ExecutorContext, params: TransformParams, schema: Any
) -> tuple[Callable[..., Any], TabularConfig | None]:
    """The user's preprocessing_fn, or the built-in one with its configuration for this schema."""
    if params.module_file:
        return ctx.load_user_module(params.module_file, required=("preprocessing_fn",)).preprocessing_fn, None
    from airflow_provider_mlpipe.runtime.builtin.tabular_transform import make_preprocessing_fn

    tabular = tabular_config.resolve(params, schema)
    log.info(
        "The built-in tabular transform: numeric %s, categorical %s, bucketize %s, crosses %s, %s label %r.",
        tabular.numeric,
        tabular.categorical,
        tabular.bucketize,
        tabular.crosses,
        tabular.kind,
        tabular.label,
    )
    return make_preprocessing_fn(tabular), tabular


def execute(ctx: ExecutorContext) -> dict[str, Any]:
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.tfxio import tensor_adapter, tensor_representation_util

    params: TransformParams = ctx.params
    module_file = params.module_file
    examples = ctx.input("examples")
    if examples.properties.get("format", "parquet") != "parquet":
        raise ValueError(
            f"Transform reads Parquet Examples; this artifact's format is {examples.properties['format']}."
        )
    schema = schema_tables.load_schema(ctx.input("schema").uri)
    preprocessing_fn, tabular = _preprocessing_fn(ctx, params, schema)
    splits = schema_tables.split_names(examples.uri, examples.properties.get("split_names"))
    analyze = list(params.analyze_splits)
    missing = [s for s in analyze if s not in splits]
    if missing:
        raise ValueError(f"The analysis split(s) {missing} are not among the example splits {splits}.")
    files = {split: schema_tables.split_files(examples.uri, split) for split in splits}
    relaxed = schema_tables.relax_dense_features(schema) if params.missing_values == "sparse" else []
    if relaxed:
        log.info("Reading %s as sparse, so rows and serving requests without them do not fail.", relaxed)
    row_counts = {split: sum(example_io.parquet_metadata(f).num_rows for f in paths) for split, paths in files.items()}

    representations = tensor_representation_util.InferTensorRepresentationsFromSchema(schema)
    config = tensor_adapter.TensorAdapterConfig(_arrow_schema(schema), representations)
    graph_dir = ctx.output("transform_graph").path
    out_dir = ctx.output("transformed_examples").path
    temp_dir = join(ctx.temp_uri, "tft-temp")

    log.info("Analyzing %s and transforming %s with %s.", analyze, splits, module_file or "the built-in transform")
    options = pipeline_options(ctx.beam_args, "Transform")
    with beam.Pipeline(options=options) as pipeline, tft_beam.Context(temp_dir=temp_dir):

        def read(split: str) -> Any:
            pattern_files = files[split]
            return (
                pipeline
                | f"List{split}" >> beam.Create(pattern_files)
                | f"Read{split}" >> beam.io.ReadAllFromParquetBatched()
                | f"ToLists{split}" >> beam.Map(_to_list_batch, schema)
            )

        if len(analyze) == 1:
            analysis_data = read(analyze[0])
        else:
            analysis_data = [read(s) for s in analyze] | "FlattenAnalysis" >> beam.Flatten()
        transform_fn = (analysis_data, config) | "Analyze" >> tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(graph_dir)
        for split in splits:
            data = analysis_data if split in analyze and len(analyze) == 1 else read(split)
            transformed, _ = ((data, config), transform_fn) | f"Transform{split}" >> tft_beam.TransformDataset(
                output_record_batches=True
            )
            _ = (
                transformed
                | f"Encode{split}" >> beam.FlatMap(_encode)
                | f"Write{split}"
                >> beam.io.WriteToTFRecord(
                    join(out_dir, f"Split-{split}", "transformed"),
                    file_name_suffix=".tfrecord.gz",
                    compression_type=beam.io.filesystem.CompressionTypes.GZIP,
                )
            )
    # TFX keeps the raw schema beside the graph, so TFTransformOutput.raw_feature_spec() works for serving.
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema), join(graph_dir, tft.TFTransformOutput.RAW_METADATA_DIR)
    )
    if tabular is not None:
        from airflow_provider_mlpipe.runtime.builtin.tabular_transform import record_vocabularies

        tabular_config.write(record_vocabularies(tabular, graph_dir), graph_dir)
    transformed_features = sorted(tft.TFTransformOutput(graph_dir).transformed_feature_spec())
    span = examples.properties.get("span")
    graph_props: dict[str, Any] = {"module_file": module_file, "analyze_splits": analyze, "relaxed_features": relaxed}
    if tabular is not None:
        graph_props["builtin"] = "tabular"
    example_props: dict[str, Any] = {"split_names": splits, "row_counts": row_counts, "format": "tfrecord_gzip"}
    if span is not None:
        graph_props["span"] = example_props["span"] = span
    ctx.output("transform_graph").properties.update(graph_props)
    ctx.output("transformed_examples").properties.update(example_props)
    return {
        "splits": splits,
        "row_counts": row_counts,
        "transformed_features": transformed_features,
        "relaxed_features": relaxed,
    }
