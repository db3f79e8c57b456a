"""Config loading: every bad input names the exact key and why; good inputs map as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmwatch.config import DEFAULT_PORT, TOKEN_FILE_TTL_SECONDS, ConfigError, TokenFile, load_config, parse_config

REPO = Path(__file__).resolve().parent.parent


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "test.yaml", env or {})
    return caught.value.problems


def test_shipped_example_is_valid() -> None:
    loaded = load_config(REPO / "config.yaml", env={})
    assert loaded.config.server.port == DEFAULT_PORT != 1234
    assert [b.name for b in loaded.config.backends] == ["workstation", "gpu-box"]
    assert str(loaded.config.backends[1].url) == "http://127.0.0.1:1235/"  # ${GPU_BOX_HOST:-127.0.0.1}


def test_empty_file_gives_defaults() -> None:
    config = parse_config("", env={}).config
    assert config.server.host == "127.0.0.1"
    assert config.backends == []
    assert config.routing.default_model == "auto"
    assert config.routing.preferences["coding"] == ["deepseek-coder", "code-llama-70b"]


def test_backend_defaults() -> None:
    backend = parse_config("backends: [{name: a, url: 'http://h:1234/v1/'}]", env={}).config.backends[0]
    assert (backend.timeout, backend.poll_interval, backend.retry_attempts, backend.kind) == (30, 5, 3, "auto")
    assert backend.base_url == "http://h:1234"  # a trailing /v1 is accepted and stripped


def test_invalid_yaml_names_line_and_column() -> None:
    [problem] = problems("server:\n  port: [1,\n")
    assert problem.startswith("line 3, column 1: invalid YAML")


def test_top_level_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == ["(top level): must be a mapping of sections, got list"]


def test_wrong_types_and_bad_url_name_their_paths() -> None:
    found = problems(
        """
server: {port: many, lean_v1: maybe}
backends:
  - {name: a, url: "http://127.0.0.1:1234"}
  - {name: b, url: "not a url", timeout: -1}
"""
    )
    assert any(p.startswith("server.port: ") and "'many'" in p for p in found)
    assert any(p.startswith("server.lean_v1: ") and "'maybe'" in p for p in found)
    assert any(p.startswith("backends[1].url: ") and "URL" in p for p in found)
    assert any(p.startswith("backends[1].timeout: ") and "greater than 0" in p for p in found)
    assert len(found) == 4  # all problems at once, not just the first


def test_unknown_keys_are_errors_at_every_level() -> None:
    found = problems(
        """
severs: {}
server: {prot: 1}
backends: [{name: a, url: "http://h:1", poll_intervall: 3}]
"""
    )
    assert "severs: unknown key (check the spelling; see config.yaml for every key)" in found
    assert any(p.startswith("server.prot: unknown key") for p in found)
    assert any(p.startswith("backends[0].poll_intervall: unknown key") for p in found)


def test_missing_required_backend_keys() -> None:
    assert problems("backends: [{name: a}]") == ["backends[0].url: required key is missing"]


def test_duplicate_backend_names() -> None:
    [problem] = problems("backends: [{name: a, url: 'http://h:1'}, {name: a, url: 'http://h:2'}]")
    assert problem.startswith("backends: backend name 'a' is used twice")


def test_token_from_env_and_file_is_one_or_the_other(tmp_path: Path) -> None:
    [problem] = problems(
        f"backends: [{{name: a, url: 'http://h:1', api_token_env: T, api_token_file: {tmp_path / 't'}}}]"
    )
    assert problem.startswith("backends[0]: set api_token_env or api_token_file, not both")


def test_token_is_read_at_use_time_not_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sk-lm-abcdefgh:secretsecretsecret12\n")
    config = parse_config(f"backends: [{{name: a, url: 'http://h:1', api_token_file: {token_file}}}]", env={}).config
    assert config.backends[0].api_token() == "sk-lm-abcdefgh:secretsecretsecret12"
    assert "secretsecret" not in config.model_dump_json()


def test_env_interpolation_with_default_and_missing() -> None:
    text = "backends: [{name: a, url: 'http://${HOST}:${PORT:-1234}'}]"
    config = parse_config(text, env={"HOST": "10.0.0.5"}).config
    assert config.backends[0].base_url == "http://10.0.0.5:1234"
    assert problems(text) == ["backends[0].url: environment variable HOST is not set"]


def test_env_overrides_for_scalars() -> None:
    text = "backends: [{name: a, url: 'http://h:1'}]"
    env = {
        "LMWATCH_SERVER__PORT": "9300",
        "LMWATCH_LOGGING__FORMAT": "json",
        "LMWATCH_BACKENDS__0__TIMEOUT": "60",
        "LMWATCH_ADMIN_TOKEN": "not-a-config-override",
    }
    config = parse_config(text, env=env).config
    assert (config.server.port, config.logging.format, config.backends[0].timeout) == (9300, "json", 60)


def test_env_override_errors_name_the_variable() -> None:
    found = problems("", env={"LMWATCH_BACKENDS__3__TIMEOUT": "1"})
    assert found == ["LMWATCH_BACKENDS__3__TIMEOUT: backends does not exist"]
    found = problems("", env={"LMWATCH_SERVER__PORT": "loud"})
    assert found[0].startswith("server.port: ") and "'loud'" in found[0]


LEGACY = """
providers:
  lmstudio:
    enabled: true
    baseUrl: http://localhost:1234/v1
    timeout: 120000
    retryAttempts: 5
    models:
      default: auto
      preferences:
        coding: [deepseek-coder, code-llama-70b]
        research: [llama-3-70b, mistral-large]
        creative: [llama-3-70b, mistral-7b]
        analysis: [glm-4-32b, qwen-2.5-coder]
"""


def test_legacy_single_server_shape_maps_onto_backends_and_routing() -> None:
    loaded = parse_config(LEGACY, env={})
    [backend] = loaded.config.backends
    assert (backend.name, backend.base_url, backend.timeout, backend.retry_attempts) == (
        "lmstudio",
        "http://localhost:1234",
        120.0,
        5,
    )
    assert loaded.config.routing.preferences["analysis"] == ["glm-4-32b", "qwen-2.5-coder"]
    assert loaded.warnings


def test_legacy_shape_errors_keep_legacy_paths() -> None:
    found = problems("providers: {lmstudio: {baseUrl: 'http://h:1', timeout: soon, retryattempts: 2}}")
    assert any(p.startswith("providers.lmstudio.timeout: ") for p in found)
    assert any(p.startswith("providers.lmstudio.retryattempts: unknown key") for p in found)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml")
    assert caught.value.problems[0].startswith("cannot read the file: No such file")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmwatch", *args], capture_output=True, text=True, timeout=60)


def test_check_config_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("backends:\n  - {name: a, url: 'http://h:1'}\n  - {name: b, url: nope, colour: red}\n")
    result = run_cli("check-config", str(bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"{bad}: backends[1].url: ") for line in lines)
    assert f"{bad}: backends[1].colour: unknown key (check the spelling; see config.yaml for every key)" in lines


def test_check_config_ok() -> None:
    result = run_cli("check-config", str(REPO / "config.yaml"))
    assert result.returncode == 0, result.stderr
    assert "OK (2 backends, listening on 127.0.0.1:9234)" in result.stdout


def test_daemon_refuses_to_start_on_invalid_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: 99999}\n")
    result = run_cli("run", "--config", str(bad))
    assert result.returncode == 1
    assert f"{bad}: server.port: " in result.stderr
    assert "nothing was started" in result.stderr


def test_a_cloud_provider_must_name_its_models() -> None:
    [problem] = problems(
        "routing: {cloud: {allowed: true, providers: [{name: c, base_url: 'https://x/v1', api_key_env: K}]}}"
    )
    assert problem.startswith("routing.cloud.providers[0].models: name the provider's model for `default`")


def test_a_url_password_and_a_token_cannot_both_be_set() -> None:
    [problem] = problems("backends: [{name: a, url: 'http://u:pw@h:1', api_token_env: T}]")
    assert problem.startswith("backends[0]: a password in url (sent as Basic auth) and an api_token")


def test_a_token_file_is_reread_after_its_cache_time(tmp_path: Path) -> None:
    now = [100.0]
    token_file = tmp_path / "token"
    token_file.write_text("first-token-value\n")
    backend = parse_config(f"backends: [{{name: a, url: 'http://h:1', api_token_file: {token_file}}}]", env={})
    assert backend.config.backends[0].api_token() == "first-token-value"
    cached = TokenFile(token_file, clock=lambda: now[0])
    assert cached.read() == "first-token-value"
    token_file.write_text("rotated-token-value\n")
    assert cached.read() == "first-token-value"  # cached: no file read per request
    now[0] += TOKEN_FILE_TTL_SECONDS
    assert cached.read() == "rotated-token-value"


@pytest.mark.parametrize("word", ["off", "Off", "no", '"off"'])
def test_an_off_enum_is_accepted_bare(word: str) -> None:
    """YAML reads a bare `off` as false; `sampling: {gpu: off}` (config.yaml writes it so) still works."""
    assert parse_config(f"sampling: {{gpu: {word}}}\n", env={}).config.sampling.gpu == "off"
    with pytest.raises(ConfigError, match=r"sampling\.gpu"):
        parse_config("sampling: {gpu: on}\n", env={})  # `on` is not one of its values


def test_a_poll_interval_under_ten_milliseconds_is_refused_by_name() -> None:
    found = problems('backends: [{name: a, url: "http://h:1", poll_interval: 1.0e-300}]')
    assert any(p.startswith("backends[0].poll_interval: ") and "0.01" in p for p in found), found
