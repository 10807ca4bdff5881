"""Distribution for trimbert.

This file is also what Apache Beam ships to remote workers with
``--setup_file ./setup.py``: it must stay importable without the project
installed and must list every runtime dependency the Beam stage needs.
"""

from setuptools import find_packages, setup

RUNTIME_REQUIREMENTS = [
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorboard==2.21.0",
    "keras>=3.15",
    "keras-hub==0.32.0",
    "tensorflow-datasets==4.9.10",
    "apache-beam==2.77.0",
    "pyarrow>=14",
    "zstandard>=0.25",
    "google-crc32c",
    "safetensors",
    "pyyaml",
    "matplotlib",
]

# Beam's DaskRunner (`--runner DaskRunner`); the versions it was tested with here.
DASK_REQUIREMENTS = ["dask[bag]>=2026.8.0", "distributed>=2026.8.0"]

# apache-beam[gcp] and gcp-storage-emulator: the Beam job is tested on gs:// against a local emulator.
# pytest-xdist: `make test` runs the suite in two worker processes; coverage: `make coverage`.
# kubernetes-validate: the manifest of `trimbert launch --emit kubernetes` is checked against the API schemas offline.
TEST_REQUIREMENTS = ["pytest", "pytest-xdist", "coverage", "ruff", "psutil", "apache-beam[gcp]==2.77.0",
                     "gcp-storage-emulator", "kubernetes-validate", *DASK_REQUIREMENTS]

# Dataflow workers need the GCP extras; kept optional so a local install stays small.
DATAFLOW_REQUIREMENTS = ["apache-beam[gcp]==2.77.0"]

setup(
    name="trimbert",
    version="0.1.0",
    description="Pre-train, trim and evaluate smaller BERT encoders.",
    python_requires=">=3.10",
    packages=find_packages(
        include=["storage", "pipeline", "pipeline.*", "models", "models.*", "beam_jobs", "beam_jobs.*", "configs"]),
    package_data={"configs": ["*.yaml", "search/*.yaml"]},
    include_package_data=True,
    install_requires=RUNTIME_REQUIREMENTS,
    extras_require={"test": TEST_REQUIREMENTS, "dataflow": DATAFLOW_REQUIREMENTS, "dask": DASK_REQUIREMENTS},
    entry_points={"console_scripts": ["trimbert=pipeline.cli.main:main"]},
)
