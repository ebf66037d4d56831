-- Runs once, when the postgres volume is first initialised: a second database for ML Metadata, owned by the same
-- role as the Airflow metadata DB. Keeping MLMD apart lets `airflow db migrate` and MLMD's own schema
-- migrations never touch each other's tables.
CREATE DATABASE mlmd OWNER airflow;
