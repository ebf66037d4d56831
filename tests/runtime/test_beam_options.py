"""A Beam stage's options: the PipelineOptions Beam gets, and the one log line with runner, options, secrets masked."""

from __future__ import annotations

import logging

import pytest
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, PipelineOptions, StandardOptions

from airflow_provider_mlpipe.runtime.beam_options import MASK, mask_value, pipeline_options

pytestmark = pytest.mark.runtime

LOGGER = "mlpipe.runtime.beam"
SECRETS = ["hunter2", "s3cr3t-key", "ya29.token", "AccountKeyValue==", "tok-123", "sig-abc", "pw-in-url"]
DATAFLOW_WITH_SECRETS = [
    "--runner=DataflowRunner",
    "--project=acme-ml",
    "--temp_location",
    "gs://acme-ml-tmp/beam",
    "--save_main_session",
    "--s3_secret_access_key=s3cr3t-key",
    "--s3_session_token=ya29.token",
    "--azure_connection_string=DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=AccountKeyValue==",
    "--flink_master=http://admin:hunter2@flink:8081",
    "--sdk_location=https://packages.example.com/beam.tar.gz?token=tok-123&sig=sig-abc&v=2",
    '--environment_config={"password": "pw-in-url", "command": "/opt/boot"}',
]


def logged_line(caplog: pytest.LogCaptureFixture, beam_args: list[str], stage: str = "Transform") -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        pipeline_options(beam_args, stage)
    [record] = [r for r in caplog.records if r.name == LOGGER]
    line = record.getMessage()
    assert "\n" not in line
    return line


def test_the_options_are_beams_own_parse_of_the_args() -> None:
    options = pipeline_options(DATAFLOW_WITH_SECRETS, "StatisticsGen")
    assert options.get_all_options(retain_unknown_options=True) == PipelineOptions(
        DATAFLOW_WITH_SECRETS
    ).get_all_options(retain_unknown_options=True)
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.temp_location) == ("acme-ml", "gs://acme-ml-tmp/beam")
    assert options.view_as(StandardOptions).runner == "DataflowRunner"


def test_the_line_names_runner_and_every_option_in_order_with_secrets_masked(caplog: pytest.LogCaptureFixture) -> None:
    line = logged_line(caplog, DATAFLOW_WITH_SECRETS, "StatisticsGen")
    for secret in SECRETS:
        assert secret not in line
    assert line.startswith("StatisticsGen runs Beam on DataflowRunner with options: ")
    expected = [
        "--project=acme-ml",
        "--temp_location=gs://acme-ml-tmp/beam",
        "--save_main_session",
        f"--s3_secret_access_key={MASK}",
        f"--s3_session_token={MASK}",
        f"--azure_connection_string={MASK}",
        f"--flink_master=http://admin:{MASK}@flink:8081",
        f"--sdk_location=https://packages.example.com/beam.tar.gz?token={MASK}&sig={MASK}&v=2",
        f'--environment_config={{"password": {MASK}, "command": "/opt/boot"}}',
    ]
    positions = [line.index(option) for option in expected]
    assert positions == sorted(positions)
    assert "--runner" not in line


def test_without_a_runner_the_line_says_directrunner_is_beams_default(caplog: pytest.LogCaptureFixture) -> None:
    assert logged_line(caplog, [], "Evaluator") == (
        "Evaluator runs Beam on DirectRunner (Beam's default) with options: none; everything else at Beam's defaults."
    )
    line = logged_line(caplog, ["--direct_running_mode=multi_processing", "--direct_num_workers", "2"])
    assert "DirectRunner (Beam's default)" in line
    assert "--direct_running_mode=multi_processing --direct_num_workers=2;" in line


def test_an_option_beam_does_not_know_is_kept_and_marked(caplog: pytest.LogCaptureFixture) -> None:
    args = ["--runner=DirectRunner", "--direct_num_wokers=2", "--direct_num_workers=1"]
    line = logged_line(caplog, args)
    assert "--direct_num_wokers=2 (not a Beam option)" in line
    assert "--direct_num_workers=1 (not" not in line
    options = pipeline_options(args)
    assert options.view_as(DirectOptions).direct_num_workers == 1
    assert options.get_all_options(retain_unknown_options=True)["direct_num_wokers"] == "2"


def test_a_runner_named_by_module_registers_its_own_options(caplog: pytest.LogCaptureFixture) -> None:
    # Beam 2.61's DaskRunner defines --dask_client_address in its own module, loaded only for that runner.
    runner = "apache_beam.runners.dask.dask_runner.DaskRunner"
    line = logged_line(caplog, [f"--runner={runner}", "--dask_client_address=tcp://127.0.0.1:8786"])
    assert line.startswith(f"Transform runs Beam on {runner} with options: --dask_client_address=tcp://127.0.0.1:8786;")


def test_a_value_beam_cannot_parse_fails_with_a_sentence_not_an_exit() -> None:
    with pytest.raises(
        ValueError, match=r"Beam cannot parse an option of this stage: .*direct_num_workers.*beam block"
    ):
        pipeline_options(["--direct_num_workers=two"])


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("--db_password", "hunter2", MASK),
        ("--api_token", "abc", MASK),
        ("--service_account_key_file", "/secrets/key.json", MASK),
        ("--client_secret", "abc", MASK),
        ("--gcp_credentials", "abc", MASK),
        ("--dask_client_address", "tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
        ("--dask_client_address", "tls://user:pw@10.0.0.1:8786", f"tls://user:{MASK}@10.0.0.1:8786"),
        ("--job_endpoint", "https://ghp_token@jobs.example.com", f"https://{MASK}@jobs.example.com"),
        ("--temp_location", "gs://bucket/tmp", "gs://bucket/tmp"),
        ("--labels", "team=ml", "team=ml"),
        ("--dataflow_service_options", "auth_token=abc,enable_prime", f"auth_token={MASK},enable_prime"),
    ],
)
def test_masking(name: str, value: str, shown: str) -> None:
    assert mask_value(name, value) == shown
