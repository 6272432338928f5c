"""Sensors of the optout Airflow skin."""
