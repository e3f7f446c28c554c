"""The GX run of one table partition on Spark, and its Data Docs.

GX's Spark datasource (dataframe asset, whole-dataframe batch, a Checkpoint with an
``UpdateDataDocsAction``): data is never collected to pandas. Data Docs are static HTML
under ``{reports_dir}/data_docs/``; validation results are kept under
``{reports_dir}/gx/validations/`` so the Data Docs index lists past runs too.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from regrow.validation.outcomes import SAMPLE_SIZE, ValidationOutcome, _outcomes_of
from regrow.validation.parameters import partition_day, runtime_parameters
from regrow.validation.suites import _suite_json

if TYPE_CHECKING:
    import great_expectations as gx
    from pyspark.sql import DataFrame

logger = logging.getLogger(__name__)

# SUMMARY: counts plus a few offending values per expectation (the error message needs
# them); GX's unexpected_index_list / unexpected_rows stay off: on Spark each is one more
# job over the data per expectation, and offending rows are isolated by split_invalid_rows.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": SAMPLE_SIZE,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}
# The first pass: the same counts and observed values, but no offending values. GX fetches
# them with one Spark job per row-level expectation even when there are none (a third of
# a small partition's validation); with a count of 0 Spark plans an empty relation and
# runs no job, and :func:`_no_values_when_none_asked` spares the planning too. Only a
# partition with unexpected values is validated again for them.
COUNTS_ONLY: dict[str, Any] = {**RESULT_FORMAT, "partial_unexpected_count": 0}
DATA_DOCS_SITE = "regrow"
# Tables and suites whose GX context a process keeps ready (:func:`_prepared`).
PREPARED_MAX = 32
# Newest validation results listed on the Data Docs index (older pages stay on disk).
DATA_DOCS_INDEX_LIMIT = 500


@functools.cache
def _no_values_when_none_asked() -> None:
    """Make GX's Spark providers of a map expectation's offending values return ``[]``
    at once when the result format asks for none of them (``partial_unexpected_count`` 0,
    not ``COMPLETE``), which is what they return anyway.

    Why: GX 1.x computes the ``*.unexpected_values`` metric of every map expectation at
    every result format but ``BOOLEAN_ONLY`` (``ColumnMapExpectation.
    get_validation_dependencies``), and ``BOOLEAN_ONLY`` drops the counts and observed
    values that ``gold.validation`` keeps. Its Spark provider builds
    ``df.withColumn().filter().drop().select().limit(0).collect()``: no Spark job, but six
    plans analysed by the JVM through py4j, about 35 ms an expectation and 1.5 s of a
    2,000-event day's five suites (py-spy, 2026-12-04). GX has no setting for it, so the
    registered Spark providers are wrapped, once; other engines and other counts are
    untouched.
    """
    from great_expectations.expectations import registry
    from great_expectations.expectations.metrics.map_metric_provider import (
        column_map_condition_auxilliary_methods as column,
    )
    from great_expectations.expectations.metrics.map_metric_provider import (
        column_pair_map_condition_auxilliary_methods as pair,
    )
    from great_expectations.expectations.metrics.map_metric_provider import (
        multicolumn_map_condition_auxilliary_methods as multicolumn,
    )

    fetchers = {
        column._spark_column_map_condition_values,
        pair._spark_column_pair_map_condition_values,
        multicolumn._spark_multicolumn_map_condition_values,
    }
    for name, definition in registry._registered_metrics.items():
        providers = definition.get("providers", {})
        provided = providers.get("SparkDFExecutionEngine")
        if not name.endswith(".unexpected_values") or not provided:
            continue
        metric_class, fetch = provided
        if fetch in fetchers:
            providers["SparkDFExecutionEngine"] = metric_class, _asked_only(fetch)


def _asked_only(fetch):
    """``fetch``, or ``[]`` without Spark when its result format asks for no value."""

    def values(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs, metrics,
               **kwargs):  # fmt: skip
        result_format = metric_value_kwargs["result_format"]
        if (
            result_format["result_format"] != "COMPLETE"
            and result_format["partial_unexpected_count"] == 0
        ):
            return []
        return fetch(cls, execution_engine, metric_domain_kwargs, metric_value_kwargs,
                     metrics, **kwargs)  # fmt: skip

    values.metric_fn_type = fetch.metric_fn_type  # the registry's tag (a VALUE metric)
    return values


# GX objects that :func:`_prepared` made and found fresh, by ``id``: the object (so an id
# reused after it is gone never matches) and the diagnostics its check returned; the
# newest at most _TRUSTED_MAX.
_TRUSTED: dict[int, tuple[Any, Any]] = {}
_TRUSTED_MAX = 4 * PREPARED_MAX  # two checkpoints and their definitions each


@functools.cache
def _freshness_checked_once() -> None:
    """Make GX's freshness checks of the checkpoints and validation definitions that
    :func:`_prepared` made return at once after the first one; GX's others are checked as
    ever.

    Why: ``Checkpoint.run`` and ``ValidationDefinition.run`` check on every run that the
    object and its suite still equal their saved copies (``is_fresh``: the stores read
    back and compared field by field), a tenth of a small partition's validation
    (cProfile and back-to-back runs, 2026-12-05). It guards a user who edits a suite
    after saving it; regrow's are made in its own in-memory context, checked once when
    made, and never changed (an edited suite file makes new ones). GX has no setting for
    it, so the two methods are wrapped, once.
    """
    from great_expectations.checkpoint.checkpoint import Checkpoint
    from great_expectations.core.validation_definition import ValidationDefinition

    for cls in (Checkpoint, ValidationDefinition):
        cls.is_fresh = _fresh_if_trusted(cls.is_fresh)


def _fresh_if_trusted(is_fresh):
    def checked(self):
        obj, diagnostics = _TRUSTED.get(id(self), (None, None))
        return diagnostics if obj is self else is_fresh(self)

    checked.__wrapped__ = is_fresh
    return checked


def _trust(*objects: Any) -> None:
    """Check ``objects`` fresh now (GX raises if not) and skip the check from now on."""
    for obj in objects:
        diagnostics = obj.is_fresh()
        diagnostics.raise_for_error()
        _TRUSTED[id(obj)] = (obj, diagnostics)
    while len(_TRUSTED) > _TRUSTED_MAX:
        del _TRUSTED[next(iter(_TRUSTED))]


def _context(reports_dir: str):
    """An ephemeral GX context: suites, datasources and checkpoints live in memory (the
    suite files are the source of truth); validation results and Data Docs are files."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    stores[defaults.validation_results_store_name] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": os.path.join(reports_dir, "gx", "validations"),
        },
    }
    config = DataContextConfig(
        stores=stores,
        expectations_store_name=defaults.expectations_store_name,
        validation_results_store_name=defaults.validation_results_store_name,
        checkpoint_store_name=defaults.checkpoint_store_name,
        data_docs_sites={
            DATA_DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": data_docs_dir(reports_dir),
                },
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "validation_results_limit": DATA_DOCS_INDEX_LIMIT,
                },
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


# Great Expectations is not thread-safe (see gate.validate_day): one run at a time.
_GX_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Prepared:
    """A context with one table's suite, its dataframe batch and its two checkpoints."""

    context: Any
    suite: gx.ExpectationSuite
    counts_only: gx.Checkpoint
    with_values: gx.Checkpoint


@functools.lru_cache(maxsize=PREPARED_MAX)
def _prepared(
    spark: Any, reports_dir: str, table: str, suite_json: str, data_docs: bool
) -> _Prepared:
    """The context and checkpoints :func:`validate` runs a table's suite with, made once a
    process and reused for every partition: a range of days validates each table hundreds
    of times, and setting them up (context, datasource, suite, definition, checkpoints)
    cost about a fifth of a small partition's validation (cProfile, 2026-12-05). Each run
    passes its own dataframe, suite parameters and run id. The suite's file content is part
    of the key, so an edited suite gets a new one; so is the Spark session, which GX's
    execution engine keeps from its first run: a process that starts another session gets
    a new one."""
    import great_expectations as gx

    context = _context(reports_dir)
    # persist=False: GX would cache each batch's dataframe (all columns) before its first
    # metric; its few jobs instead read the partition's files, each only the columns it
    # needs. A 1M-row bronze.events day validated in 1.6 s instead of 3.4 s (medians of
    # four, 2026-12-06); regrow only validates table reads, never a costly lineage.
    batch = (
        context.data_sources.add_spark(name="regrow", persist=False)
        .add_dataframe_asset(name=table)
        .add_batch_definition_whole_dataframe(name=table)
    )
    # A copy: adding a suite to a context gives it ids and binds it to that context.
    suite = context.suites.add(gx.ExpectationSuite(**json.loads(suite_json)))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=table, data=batch, suite=suite)
    )

    def checkpoint(name: str, result_format: dict[str, Any]) -> gx.Checkpoint:
        actions = [
            gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DATA_DOCS_SITE])
        ]
        return context.checkpoints.add(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=actions if data_docs else [],
                result_format=result_format,
            )
        )

    prepared = _Prepared(
        context,
        suite,
        counts_only=checkpoint(table, COUNTS_ONLY),
        with_values=checkpoint(f"{table} (offending values)", RESULT_FORMAT),
    )
    checkpoints = (prepared.counts_only, prepared.with_values)
    _trust(*checkpoints, *(d for c in checkpoints for d in c.validation_definitions))
    return prepared


def build_data_docs(reports_dir: str, suites: Sequence[gx.ExpectationSuite] = ()) -> str:
    """Rebuild the Data Docs site from every validation result on disk (after a range of
    days validated with ``data_docs=False``); returns the index page."""
    import great_expectations as gx

    context = _context(reports_dir)
    for suite in suites:
        context.suites.add(gx.ExpectationSuite(**json.loads(_suite_json(suite))))
    context.build_data_docs(site_names=[DATA_DOCS_SITE])
    return os.path.join(data_docs_dir(reports_dir), "index.html")


def data_docs_dir(reports_dir: str) -> str:
    return os.path.join(reports_dir, "data_docs")


def _run_name(run_id: str, partition: Mapping[str, Any]) -> str:
    """A run name that is also a safe folder name: ``{partition}__{run_id}``."""
    text = "__".join([*(f"{k}={v}" for k, v in partition.items()), run_id])
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text)


def validate(
    df: DataFrame,
    suite: gx.ExpectationSuite,
    table: str,
    partition: Mapping[str, Any],
    run_id: str,
    reports_dir: str,
    *,
    recent_counts: Sequence[int] = (),
    now: dt.datetime | None = None,
    parameters: Mapping[str, Any] | None = None,
    raise_on_critical: bool = True,
    data_docs: bool = True,
) -> ValidationOutcome:
    """Validate one partition of ``table`` with ``suite`` on Spark and build its Data Docs.

    Args:
        partition: ``{date_column: day}``; the day fills the suite's time bounds.
        recent_counts: row counts of recent partitions (:func:`recent_row_counts`), for the
            row-count bounds.
        parameters: overrides of :func:`runtime_parameters`' values.
        raise_on_critical: raise :class:`ValidationError` (with ``.outcome``) on a critical
            failure, after the results and Data Docs are written.
        data_docs: rebuild the Data Docs site now; a range of days builds it once at the
            end instead (:func:`build_data_docs`): rendering costs ~0.8 s a suite.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    _no_values_when_none_asked()
    _freshness_checked_once()
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    values = {
        **runtime_parameters(partition_day(partition), recent_counts, now),
        **(parameters or {}),
    }
    suite_json = _suite_json(suite)
    run = RunIdentifier(run_name=_run_name(run_id, partition), run_time=now)
    with _GX_LOCK:
        prepared = _prepared(df.sparkSession, reports_dir, table, suite_json, data_docs)

        def run_checkpoint(checkpoint: gx.Checkpoint):
            result = checkpoint.run(
                batch_parameters={"dataframe": df}, expectation_parameters=values, run_id=run
            )
            ((key, suite_result),) = result.run_results.items()
            return key, suite_result

        key, suite_result = run_checkpoint(prepared.counts_only)
        if any((r.result or {}).get("unexpected_count") for r in suite_result.results):
            # The same run id: it replaces the first result in the store and Data Docs.
            key, suite_result = run_checkpoint(prepared.with_values)
        docs = prepared.context.get_docs_sites_urls(
            resource_identifier=key, site_name=DATA_DOCS_SITE
        )
    url = docs[0]["site_url"] if docs and data_docs else None
    outcome = ValidationOutcome(
        table=table,
        partition=dict(partition),
        suite=prepared.suite.name,
        run_id=run_id,
        validated_at=now,
        results=_outcomes_of(suite_result.results, values, recent_counts),
        data_docs_path=unquote(urlparse(url).path) if url else None,
    )
    logger.info(
        "%s %s: %d expectations, %d critical failure(s), %d warning(s); %s",
        table,
        outcome.partition_str,
        len(outcome.results),
        len(outcome.critical_failures),
        len(outcome.warnings),
        outcome.data_docs_path,
    )
    for warning in outcome.warnings:
        logger.warning("%s %s: warning: %s", table, outcome.partition_str, warning.describe(table))
    if raise_on_critical:
        outcome.raise_for_critical()
    return outcome
