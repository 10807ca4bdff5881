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
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from configs.errors import TrimbertError

LOCAL_RUNNER_NAMES = (None, "DirectRunner", "direct", "FnApiRunner")
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


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

    Beam's Dask runner opens a client connection to the scheduler for each run and never closes it;
    it is closed here, or it would keep retrying once the cluster is gone.
    """
    pipeline = new_pipeline(options)
    try:
        with pipeline:
            yield pipeline
    finally:
        client = getattr(getattr(pipeline, "result", None), "client", None)
        if client is not None:
            client.close()


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the FnApiRunner for local runs, else on the runner the options name."""
    if options.view_as(StandardOptions).runner in LOCAL_RUNNER_NAMES:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)
