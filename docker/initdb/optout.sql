-- The opt-out store lives beside Airflow's metadata, in a database of its own.
CREATE DATABASE optout OWNER airflow;
