"""What a cluster's Keep signing policy is, read from its config, and what it says at start."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from clusterfed.config import parse_config
from clusterfed.server.keep.blocks import KeepService


def config(tmp_path: Path, **cluster: object):
    body = {
        "Volumes": {
            "qr1hi-nyw5e-000000000000000": {
                "Driver": "Directory",
                "DriverParameters": {"Root": str(tmp_path)},
            }
        }
    }
    return parse_config({"Clusters": {"qr1hi": {**body, **cluster}}})


def test_signing_without_a_key_is_not_enforced_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="clusterfed.keep"):
        service = KeepService.from_config(config(tmp_path))
    assert not service.signer.enforced
    assert "neither BlobSigningKey nor SystemRootToken" in caplog.text


def test_a_root_token_makes_signing_enforced_and_quiet(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="clusterfed.keep"):
        service = KeepService.from_config(config(tmp_path, SystemRootToken="root-secret"))
    assert service.signer.enforced
    assert "BlobSigning" not in caplog.text


def test_signing_turned_off_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clusterfed.keep"):
        service = KeepService.from_config(config(tmp_path, Collections={"BlobSigning": False}))
    assert not service.signer.enforced
    assert caplog.text == ""
