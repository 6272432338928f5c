"""Hooks of the optout Airflow skin."""
