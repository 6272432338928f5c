# `make airflow`: Airflow standalone on embedded defaults, with the project's DAGs, the governance page
# and demo data already refreshed; prints the URL and the login. State lives in var/ (git-ignored).
# The lead includes this in the Makefile (`include docs/airflow-target.mk`) or copies the two lines below.
airflow: $(VENV)/.installed
	$(BIN)/python include/airflow_standalone.py
