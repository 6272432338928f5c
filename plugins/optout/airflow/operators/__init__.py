"""Operators of the optout Airflow skin."""
