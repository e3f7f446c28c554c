"""The regrow page of the Airflow UI: what it shows (:mod:`.page`, read from the project's
tables and registry), how it looks (:mod:`.render`, one self-contained HTML page) and the
FastAPI app that serves it behind Airflow's login (:mod:`.app`, mounted by
``plugins/regrow_plugin.py``)."""
