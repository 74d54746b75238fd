"""The store server's settings (YAML file and LANEGUARD_* environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from laneguard.settings import ServiceSettings
from laneguard.time_zones import zone_named
from product_db.db import DEFAULT_DATABASE_URL


class StoreSettings(ServiceSettings):
    """Everything the store server can be told. Each default suits a single-store demo."""

    model_config = SettingsConfigDict(env_prefix="LANEGUARD_", extra="forbid")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLite file (default) or postgresql://user@host/db for larger stores",
    )
    data_dir: Path = Field(default=Path("data"), description="evidence images, models, samples")
    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8000, ge=1, le=65535)
    store_name: str = Field(default="LaneGuard demo store")
    currency: str = Field(default="EUR", min_length=3, max_length=3)
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone the console shows times and days in, e.g. Europe/Berlin "
        "(default: this computer's)",
    )
    bundle: Path | None = Field(
        default=None, description="the model bundle the lanes run (default: the shipped one)"
    )
    signing_key: Path | None = Field(
        default=None, description="Ed25519 key that signs gallery updates (default: made once)"
    )
    bundle_keys: list[Path] = Field(
        default_factory=list,
        description="public keys; when set, a bundle is published only if signed by one",
    )
    discovery_port: int = Field(
        default=47800, ge=0, le=65535, description="UDP port lanes find the server on (0: off)"
    )
    public_url: str | None = Field(
        default=None, description="the URL lanes should use, when not https://<address>:<port>"
    )
    tls: bool = Field(
        default=True,
        description="serve HTTPS; lanes pin the certificate once the store's key vouches for it "
        "(off: plain HTTP, which lanes refuse unless their allow_plain_http says so)",
    )
    tls_cert: Path | None = Field(
        default=None,
        description="certificate chain IT gives the server (PEM; with tls_key); default: one "
        "made once in the data folder (keys/tls.crt)",
    )
    tls_key: Path | None = Field(default=None, description="the private key of tls_cert (PEM)")
    retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="days alert crops and clips are kept (alerts a manager keeps: until unkept)",
    )
    sample_retention_days: int = Field(
        default=180,
        ge=1,
        le=3650,
        description="days training crops are kept (HQ keeps its pooled copies pooled_days)",
    )
    frame_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="days detection frames are kept (whole scenes of the lane, masked and "
        "blurred, yet more of the customer than a crop: as long as evidence)",
    )
    rollout_check_s: float = Field(
        default=5.0, gt=0, description="how often the active rollout's lanes are judged"
    )
    max_body_kb: int = Field(
        default=256, ge=1, description="largest request body anywhere but ingest and uploads"
    )
    max_ingest_mb: int = Field(
        default=32, ge=1, description="largest ingest batch (lanes send up to 500 messages)"
    )
    max_upload_mb: int = Field(default=20, ge=1, description="largest catalog file upload")
    lane_transactions_per_minute: int = Field(
        default=30,
        ge=1,
        description="transactions one lane may send a minute (a lane rings up a few; five "
        "minutes' worth pass at once, for the backlog of an outage)",
    )
    lane_samples_per_minute: int = Field(
        default=300, ge=1, description="training crops one lane may send a minute (the same)"
    )
    lane_frames_per_minute: int = Field(
        default=60,
        ge=1,
        description="detection frames one lane may send a minute (the same; a frame is up to "
        "1.5 MB, so fewer than crops)",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="publish alerts, lane health and rollout steps to this broker: "
        "mqtt://host[:port] or mqtts://host[:port] (TLS); none: no events",
    )
    mqtt_username: str | None = Field(default=None, max_length=256)
    mqtt_password: str | None = Field(default=None, max_length=256)
    mqtt_ca_file: Path | None = Field(
        default=None, description="CA certificate for mqtts:// (default: the system's)"
    )
    mqtt_store: str | None = Field(
        default=None,
        max_length=64,
        description="the store's level in the topics laneguard/<store>/... "
        "(default: the store name, topic-safe)",
    )
    metrics_tokens: list[str] = Field(
        default_factory=list,
        description="secrets a Prometheus scraper may use for /metrics (Authorization: "
        "Bearer); none: scrapes from this computer only",
    )
    learn_min_transactions: int = Field(
        default=3, ge=1, description="honest transactions before a crop joins the gallery"
    )
    teacher: bool = Field(
        default=True, description='the teacher (T3) labels lanes\' "of interest" crops'
    )
    teacher_bundle: Path | None = Field(
        default=None, description="the teacher model (default: the shipped teacher.tar.gz)"
    )
    frame_teacher: bool = Field(
        default=True,
        description='the production bundle\'s largest detector judges the "of interest" boxes '
        "of lanes' detection frames (off: a person decides every box on the Samples page)",
    )
    frame_teacher_t3: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="a box the frame teacher detects its label in at this score or more is a "
        "real object (verdict yes)",
    )
    frame_teacher_reject: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="under this score the frame teacher says nothing is there (verdict no); "
        "between it and frame_teacher_t3 a person decides on the Samples page",
    )
    learn_consistency: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="least similarity of a joining crop to its product's other crops "
        "(default: measured on the bundle's gallery)",
    )
    hq_ca_file: Path | None = Field(
        default=None,
        description="CA HQ's HTTPS certificate is checked against (default: the system's)",
    )
    hq_nats_ca_file: Path | None = Field(
        default=None,
        description="CA the chain broker's certificate is checked against (default: the one "
        "HQ gave at enrolment, else the system's)",
    )
    hq_status_s: float = Field(
        default=15.0, gt=0, description="how often the store tells its chain's HQ its health"
    )
    hq_summary_s: float = Field(
        default=300.0, gt=0, description="how often the store sends HQ today's figures"
    )

    @model_validator(mode="after")
    def _certificate_with_its_key(self) -> StoreSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self

    @model_validator(mode="after")
    def _reject_below_t3(self) -> StoreSettings:
        if self.frame_teacher_reject > self.frame_teacher_t3:
            raise ValueError(
                "frame_teacher_reject must not be above frame_teacher_t3: a score cannot be "
                "both a yes and a no"
            )
        return self

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str | None) -> str | None:
        zone_named(value)  # refuses a name the IANA database does not know
        return value
