"""The Airflow skin: hooks, operators, sensors, the cluster policy and the governance page.

Airflow finds these through the package's entry points; nothing here runs at import time.
"""
