"""TensorFlow's start-up notices are dropped; every other line written to stderr meanwhile gets through."""

from __future__ import annotations

import os

from beam_jobs import quiet_tensorflow


def test_only_the_start_up_notices_are_dropped(capfd):
    with quiet_tensorflow._start_up_notices_dropped():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see slightly different ...\n")
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n")
        os.write(2, b"E0000 some_op.cc:12] a real error\n")
        os.write(2, b"E0000 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n")
        os.write(2, b"a warning of trimbert's\n")
    assert capfd.readouterr().err == "E0000 some_op.cc:12] a real error\na warning of trimbert's\n"
