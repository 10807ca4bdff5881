"""Which Beam runner executes the job, and with which options.

Beam 2.77's ``DirectRunner`` hands pipelines to the Prism runner. Prism runs the Python work in
loopback mode, inside the launching process, and ignores ``--direct_num_workers``, so a local job
would use one core. When no remote runner is named, the job therefore uses Beam's FnApiRunner in
``multi_processing`` mode, with one SDK worker process per core. Any ``--runner`` given on the
command line (DataflowRunner, FlinkRunner, SparkRunner, PrismRunner ...) is used as it is.

Beam 2.77 resolves ``DaskRunner`` only by its full path; the short name is mapped to it here. Beam's
Dask runner puts a ``beam.Create`` of up to 128 elements in one Dask partition, which would put every
read unit on one worker; unless ``--dask_npartitions`` or ``--dask_partition_size`` is given, each
unit gets a partition of its own, so units spread over the workers.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from configs.errors import TrimbertError

LOCAL_RUNNER_NAMES = (None, "DirectRunner", "direct", "FnApiRunner")
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
_REPORTED_ERROR = re.compile(r"^configs\.errors\.TrimbertError: (.*)$", re.MULTILINE)
_STEP_SUFFIX = re.compile(r" \[while running '[^\n]*'\]$")


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the command line; a local run defaults to one worker process per core.

    Args:
        beam_args: Beam flags (``--runner``, ``--direct_num_workers``, ``--project`` ...).
    """
    beam_args = list(beam_args)
    given = " ".join(beam_args)
    options = PipelineOptions(beam_args)
    if options.view_as(StandardOptions).runner in ("DaskRunner", DASK_RUNNER):
        try:  # importing the runner registers its --dask_* options
            from apache_beam.runners.dask import dask_runner  # noqa: F401
        except ImportError as error:
            raise TrimbertError(f"--runner DaskRunner needs dask and distributed (pip install -e "
                                f"'.[dask]'): {error}") from error

        extra = [] if "--dask_npartitions" in given or "--dask_partition_size" in given else [
            "--dask_partition_size=1"]
        options = PipelineOptions(beam_args + extra)
        options.view_as(StandardOptions).runner = DASK_RUNNER
    direct = options.view_as(DirectOptions)
    if options.view_as(StandardOptions).runner in LOCAL_RUNNER_NAMES:
        if "--direct_running_mode" not in given:
            direct.direct_running_mode = "multi_processing"
        if "--direct_num_workers" not in given:
            direct.direct_num_workers = os.cpu_count() or 1
    return options


@contextlib.contextmanager
def running(options: PipelineOptions):
    """``with running(options) as pipeline:`` builds the graph, then runs it to the end on leaving.

    A :class:`TrimbertError` raised in a step (a corrupt input file found while reading it) leaves
    as a TrimbertError with its own message, whichever runner ran the step: the FnApiRunner raises
    it again with the step's name appended, in one process, and in ``multi_processing`` mode raises
    a RuntimeError holding the worker's traceback, whose last TrimbertError line is the message.

    Beam's Dask runner opens a client connection to the scheduler for each run and never closes it;
    it is closed here, or it would keep retrying once the cluster is gone.
    """
    pipeline = new_pipeline(options)
    try:
        with pipeline:
            yield pipeline
    except Exception as error:
        message = step_error_message(error)
        if message is None:
            raise
        raise TrimbertError(message) from error
    finally:
        client = getattr(getattr(pipeline, "result", None), "client", None)
        if client is not None:
            client.close()


def step_error_message(error: Exception) -> str | None:
    """The message of the TrimbertError a step raised, if ``error`` is one or reports one, else None."""
    if isinstance(error, TrimbertError):
        message = str(error)
    else:
        found = _REPORTED_ERROR.findall(str(error))
        if not found:
            return None
        message = found[-1]
    return _STEP_SUFFIX.sub("", message)


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the FnApiRunner for local runs, else on the runner the options name."""
    if options.view_as(StandardOptions).runner in LOCAL_RUNNER_NAMES:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)
