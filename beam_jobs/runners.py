"""Which Beam runner executes the job, and with which options.

Beam 2.77's ``DirectRunner`` hands pipelines to the Prism runner. Prism runs the Python work in
loopback mode, inside the launching process, and ignores ``--direct_num_workers``, so a local job
would use one core. When no remote runner is named, the job therefore uses Beam's FnApiRunner in
``multi_processing`` mode, with one SDK worker process per core. Any ``--runner`` given on the
command line (DataflowRunner, FlinkRunner, SparkRunner, PrismRunner ...) is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

LOCAL_RUNNER_NAMES = (None, "DirectRunner", "direct", "FnApiRunner")


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam options from the command line; a local run defaults to one worker process per core.

    Args:
        beam_args: Beam flags (``--runner``, ``--direct_num_workers``, ``--project`` ...).
    """
    options = PipelineOptions(list(beam_args))
    given = " ".join(beam_args)
    direct = options.view_as(DirectOptions)
    if options.view_as(StandardOptions).runner in LOCAL_RUNNER_NAMES:
        if "--direct_running_mode" not in given:
            direct.direct_running_mode = "multi_processing"
        if "--direct_num_workers" not in given:
            direct.direct_num_workers = os.cpu_count() or 1
    return options


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the FnApiRunner for local runs, else on the runner the options name."""
    if options.view_as(StandardOptions).runner in LOCAL_RUNNER_NAMES:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    return beam.Pipeline(options=options)
