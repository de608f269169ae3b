"""``Clusters.<id>.TLS``: the certificate and key ``serve`` hands to uvicorn."""

from __future__ import annotations

from pathlib import Path

import pytest
from clusterfed.config import ConfigError, parse_config
from clusterfed.server.testing import cluster_config


def with_tls(tls: object) -> dict[str, object]:
    config = cluster_config("qr1hi", "sqlite+aiosqlite:///unused.db")
    config["Clusters"]["qr1hi"]["TLS"] = tls
    return config


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    return cert, key


def test_no_tls_by_default() -> None:
    config = parse_config(cluster_config("qr1hi", "sqlite+aiosqlite:///unused.db"))
    assert (config.tls_certificate, config.tls_key) == ("", "")


@pytest.mark.parametrize("prefix", ["", "file://"])
def test_paths_and_arvados_file_urls(pem_files: tuple[Path, Path], prefix: str) -> None:
    cert, key = pem_files
    config = parse_config(with_tls({"Certificate": f"{prefix}{cert}", "Key": f"{prefix}{key}"}))
    assert (config.tls_certificate, config.tls_key) == (str(cert), str(key))


def test_missing_file_names_the_key(pem_files: tuple[Path, Path], tmp_path: Path) -> None:
    cert, _ = pem_files
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=r"Clusters\.qr1hi\.TLS\.Key: no such file: .*nope\.pem"):
        parse_config(with_tls({"Certificate": str(cert), "Key": str(missing)}), source="c.yml")


def test_certificate_without_key_is_refused(pem_files: tuple[Path, Path]) -> None:
    cert, _ = pem_files
    with pytest.raises(ConfigError, match=r"Clusters\.qr1hi\.TLS: Certificate and Key"):
        parse_config(with_tls({"Certificate": str(cert)}))
