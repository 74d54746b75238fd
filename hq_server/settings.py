"""HQ's settings (YAML file and LANEGUARD_HQ_* environment variables)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from laneguard.settings import ServiceSettings


class HqSettings(ServiceSettings):
    """Everything HQ can be told. A chain runs it on PostgreSQL; SQLite suits a demo."""

    model_config = SettingsConfigDict(env_prefix="LANEGUARD_HQ_", extra="forbid")

    database_url: str = Field(
        default="sqlite:///data-hq/laneguard-hq.sqlite3",
        description="postgresql://user@host/db (a chain), or a SQLite file (a demo)",
    )
    data_dir: Path = Field(default=Path("data-hq"), description="pooled crops, bundles, keys")
    host: str = Field(default="127.0.0.1")
    port: int = Field(default=8100, ge=1, le=65535)
    chain_name: str = Field(default="LaneGuard demo chain", max_length=120)
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        description="the JetStream broker stores and HQ share (told to stores at enrolment)",
    )
    store_nats_url: str | None = Field(
        default=None,
        description="the broker URL stores are told at enrolment (default: nats_url without "
        "its user name and password: HQ never hands out its own credential)",
    )
    nats_ca_file: Path | None = Field(
        default=None,
        description="CA the broker's certificate is checked against (tls:// URLs); given to "
        "stores at enrolment (default: the system's CAs)",
    )
    public_url: str | None = Field(
        default=None, description="the URL stores reach HQ at, when not http(s)://<host>:<port>"
    )
    tls_cert: Path | None = Field(
        default=None,
        description="HQ's certificate chain (PEM, with tls_key): HQ serves HTTPS. Stores check "
        "it against the system's CAs, or their hq_ca_file",
    )
    tls_key: Path | None = Field(default=None, description="the private key of tls_cert")
    signing_key: Path | None = Field(
        default=None, description="Ed25519 key HQ signs messages and bundles with (default: made)"
    )
    max_body_kb: int = Field(default=256, ge=1)
    pooled_days: int = Field(
        default=180, ge=1, le=3650, description="days pooled crops are kept for training"
    )
    wave_soak_s: float = Field(
        default=600.0, ge=0, description="healthy time of a wave's stores before the next wave"
    )
    store_soak_s: float = Field(
        default=300.0, ge=0, description="each store's own canary-lane soak in a chain rollout"
    )
    wave_check_s: float = Field(default=5.0, gt=0, description="how often rollout waves move")
    agree_similarity: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="how alike two stores' entries for a code must be for the chain to take "
        "it without a person confirming (hq_server.gallery_release)",
    )
    stale_s: float = Field(default=90.0, gt=0, description="a store silent this long is offline")

    @model_validator(mode="after")
    def _certificate_with_its_key(self) -> HqSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self

    def nats_url_for_stores(self) -> str:
        """What enrolling stores are told: ``store_nats_url``, or ``nats_url`` with any
        credential in it removed."""
        if self.store_nats_url:
            return self.store_nats_url
        parts = urlsplit(self.nats_url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def store_name(self) -> str:
        """The name the shared console templates show in their header."""
        return self.chain_name
