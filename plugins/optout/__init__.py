"""optout: apply England's National Data Opt-out to data pipelines.

The library modules import neither Airflow nor Great Expectations; the Airflow skin lives in
``optout.airflow`` and is found by Airflow through the package's entry points.
"""

__version__ = "0.1.0"
