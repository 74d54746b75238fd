"""The manager's console over real HTTP on SQLite and PostgreSQL: sign-in, roles, CSRF, the
audit log, and every page fed by data a lane delivered through the real ingest API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from product_db import SAMPLE_CATALOG
from product_db.catalog import get_product, import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import make_engine
from store_server.app import create_app
from store_server.auth import create_user
from store_server.db import migrate
from store_server.models import AlertRecord, AuditEntry, SampleRecord
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrol, serve, sign_in
from tests.helpers.messages import NOW, alert, as_json, heartbeat, jpeg, sample, transaction


@pytest.fixture
def console(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A store with the sample catalog, a manager, an IT admin, and lane-1's deliveries."""
    engine = make_engine(database_url)
    migrate(engine)
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    create_user(engine, "mia", "manager-pass", "manager")
    create_user(engine, "ivan", "admin-pass!", "it_admin")
    engine.dispose()
    with serve(create_app(StoreSettings(database_url=database_url, data_dir=tmp_path))) as url:
        credential = enrol(url, database_url, "lane-1")
        crop = jpeg(3)
        messages = [
            as_json(transaction("lane-1", 1, honest=False)),
            as_json(transaction("lane-1", 2)),
            as_json(alert("lane-1", 1, image=crop)),
            as_json(alert("lane-1", 2, "resolved")),
            as_json(sample("lane-1", 1, crop)),
            as_json(heartbeat("lane-1", NOW, 24.0)),
        ]
        reply = httpx.post(
            f"{url}/api/v1/ingest",
            json={"messages": messages},
            headers={"Authorization": f"Bearer {credential}"},
        )
        assert reply.json()["stored"] == len(messages), reply.text
        yield url


def test_sign_in_is_required_and_wrong_passwords_are_refused(
    console: str, database_url: str
) -> None:
    with httpx.Client(base_url=console, timeout=10) as client:
        page = client.get("/alerts?status=open")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/alerts%3Fstatus%3Dopen"
        assert client.get("/media/" + "0" * 64 + ".jpg").status_code == 303
        form = client.get("/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
        assert token is not None
        wrong = client.post(
            "/login",
            data={"username": "mia", "password": "guess", "login_csrf": token.group(1)},
        )
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        forged = httpx.post(  # a login posted from another site has no matching cookie
            f"{console}/login",
            data={"username": "mia", "password": "manager-pass", "login_csrf": "x" * 20},
        )
        assert forged.status_code == 403
        assert "lg_session" not in forged.cookies
        for off_site in ("//evil.example/", "/\\evil.example/"):  # browsers read /\ as //
            form = client.get("/login", params={"next": off_site})
            assert form.status_code == 200 and "evil.example" not in form.text
        redirect = client.post(
            "/login",
            data={
                "username": "mia",
                "password": "manager-pass",
                "login_csrf": client.cookies["lg_login_csrf"],
                "next": "/\\evil.example/",
            },
        )
        assert redirect.status_code == 303 and redirect.headers["location"] == "/alerts"
    engine = make_engine(database_url)
    with Session(engine) as session:
        actions = [e.action for e in session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))]
    engine.dispose()
    assert actions[-2:] == ["login.failed", "login"]


def test_manager_reviews_alerts_and_samples_with_csrf_and_audit(
    console: str, database_url: str
) -> None:
    with httpx.Client(base_url=console, timeout=10) as client:
        csrf = sign_in(client, "mia", "manager-pass")
        listing = client.get("/alerts").text
        assert "lane-1-a1" in listing and "unscanned item" in listing
        detail = client.get("/alerts/lane-1-a1").text
        evidence = re.search(r'src="/media/([0-9a-f]{64}\.jpg)"', detail)
        assert evidence is not None
        image = client.get(f"/media/{evidence.group(1)}")
        assert image.status_code == 200 and image.content == jpeg(3)
        assert client.get("/media/..%2F..%2Fetc%2Fpasswd").status_code == 404

        no_token = client.post("/alerts/lane-1-a1/review", data={"review": "false_alarm"})
        assert no_token.status_code == 403 and "security token" in no_token.text
        reviewed = client.post(
            "/alerts/lane-1-a1/review",
            data={"review": "recovered", "note": "paid at lane", "csrf_token": csrf},
        )
        assert reviewed.status_code == 303
        assert "Recovered" in client.get("/alerts/lane-1-a1").text

        samples = client.get("/samples").text
        sample_id = re.search(r'data-sample="(\d+)"', samples)
        assert sample_id is not None
        bad = client.post(
            f"/samples/{sample_id.group(1)}/review",
            data={"action": "relabel", "label": "12345", "csrf_token": csrf},
        )
        assert bad.status_code == 422 and "relabel" in bad.text
        relabel = client.post(
            f"/samples/{sample_id.group(1)}/review",
            data={"action": "relabel", "label": "4011", "csrf_token": csrf},
        )
        assert relabel.status_code == 303

        analytics = client.get("/analytics", params={"days": 366}).text
        assert re.search(r'id="n-alerts">2<', analytics)
        assert "0.00 EUR" not in re.search(r'id="loss-prevented">([^<]+)<', analytics).group(1)  # type: ignore[union-attr]
        assert "How alerts ended" in analytics and "recovered" in analytics

        def listed(**params: object) -> list[str]:
            page = client.get("/transactions", params=params).text
            return sorted(re.findall(r'<td class="code[^"]*">([^<]+)</td>', page))

        assert listed() == ["1", "2"]
        assert listed(q="2") == ["2"]  # a transaction id
        assert listed(q="4011") == ["1", "2"]  # a product code seen or scanned
        assert listed(q="40110") == []
        assert listed(flagged=True) == ["1"]
        assert listed(lane="lane-9") == []
        # What the search form sends: every field, the blank ones empty.
        assert listed(q="4011", lane="", day="") == ["1", "2"]
        assert listed(q="4011", lane="", day=NOW.date().isoformat()) == ["1", "2"]
        assert listed(q="4011", lane="", day="2026-11-25") == []
        bad_day = client.get("/transactions", params={"q": "4011", "day": "24/11/2026"})
        assert bad_day.status_code == 422 and "is not a date: use YYYY-MM-DD" in bad_day.text
        assert "<table" in bad_day.text  # the page, not a bare JSON error

        lanes = client.get("/lanes").text
        assert "lane-1" in lanes and "24.0" in lanes and "Enrol a lane" not in lanes
        assert client.get("/audit").status_code == 403  # IT admin only
        refused = client.post(
            "/lanes/enrolment-tokens", data={"lane_id": "lane-9", "csrf_token": csrf}
        )
        assert refused.status_code == 403
    engine = make_engine(database_url)
    with Session(engine) as session:
        record = session.get(AlertRecord, "lane-1-a1")
        assert record is not None and record.review == "recovered"
        assert record.reviewed_by == "mia" and record.review_note == "paid at lane"
        stored = session.exec(select(SampleRecord)).one()
        assert (stored.review, stored.label, stored.reviewed_by) == ("relabelled", "4011", "mia")
        actions = {e.action for e in session.exec(select(AuditEntry))}
    engine.dispose()
    assert {"alert.review", "sample.relabel"} <= actions


def test_catalog_edits_and_imports_from_the_console(console: str, database_url: str) -> None:
    with httpx.Client(base_url=console, timeout=10) as client:
        csrf = sign_in(client, "mia", "manager-pass")
        bad = client.post("/catalog/4011", data={"price": "1.2.3", "csrf_token": csrf})
        assert bad.status_code == 422 and "price" in bad.text
        changed = client.post(
            "/catalog/4011", data={"price": "1.89", "active": "true", "csrf_token": csrf}
        )
        assert changed.status_code == 303
        upload = (
            "code,name,brand,price,currency,category,sold_by,age_restricted,active\n"
            "4011,Banana,,1.99,EUR,fruit,weight,false,true\n"
            "12345,Broken,,1.00,EUR,x,unit,false,true\n"
        )
        imported = client.post(
            "/catalog/import",
            data={"csrf_token": csrf},
            files={"file": ("prices.csv", upload.encode(), "text/csv")},
        )
        assert imported.status_code == 200
        assert 'id="import-report"' in imported.text and "line 3" in imported.text
        binary = client.post(
            "/catalog/import",
            data={"csrf_token": csrf},
            files={"file": ("prices.csv", b"\xff\xfe\x00bad", "text/csv")},
        )
        assert "not UTF-8" in binary.text
        csrf = sign_in(client, "ivan", "admin-pass!")
        audit = client.get("/audit").text
    # The audit log in words: the product by name, prices in the store's currency.
    assert "Changed Banana (4011): price from 1.79 EUR to 1.89 EUR" in audit
    assert "Imported the catalog:" in audit and "price_minor" not in audit
    engine = make_engine(database_url)
    detail = get_product(engine, "4011")
    assert detail.record.price_minor == 199
    assert [p.price_minor for p in detail.price_history][-2:] == [189, 199]
    engine.dispose()


def test_it_admin_enrols_and_retires_lanes_and_reads_the_audit_log(console: str) -> None:
    with httpx.Client(base_url=console, timeout=10) as client:
        csrf = sign_in(client, "ivan", "admin-pass!")
        made = client.post(
            "/lanes/enrolment-tokens",
            data={"lane_id": "lane-2", "name": "Express", "csrf_token": csrf},
        )
        token = re.search(r"\(shown once\): <code>([^<]+)</code>", made.text)
        assert token is not None
        taken = client.post(
            "/lanes/enrolment-tokens", data={"lane_id": "lane-1", "csrf_token": csrf}
        )
        assert "already enrolled" in taken.text
        bad_id = client.post(
            "/lanes/enrolment-tokens", data={"lane_id": "../x", "csrf_token": csrf}
        )
        assert "lane id" in bad_id.text
        enrolled = httpx.post(f"{console}/api/v1/enrol", json={"token": token.group(1)})
        assert enrolled.json()["lane_id"] == "lane-2"
        assert client.post("/lanes/lane-2/retire", data={"csrf_token": csrf}).status_code == 303
        assert "retired" in client.get("/lanes").text
        audit = client.get("/audit").text
        for action in ("lane.token_created", "lane.enrolled", "lane.retired", "login"):
            assert action in audit
        for sentence in (
            "Created a one-time enrolment token for lane lane-2",
            "Lane lane-2 enrolled",
            "Retired lane lane-2",
            "Signed in",
        ):
            assert sentence in audit


def test_a_release_id_past_the_databases_integers_is_refused_not_a_crash(console: str) -> None:
    """Found by the forms fuzzer: 2**63 reached SQLite and failed with a 500."""
    with httpx.Client(base_url=console, timeout=10) as client:
        csrf = sign_in(client, "ivan", "admin-pass!")
        reply = client.post(
            "/rollouts", data={"release_id": str(2**63), "canary": "lane-1", "csrf_token": csrf}
        )
        assert reply.status_code == 422


def test_every_console_cookie_is_secure_behind_tls(tmp_path: Path) -> None:
    """Served over HTTPS, the login form's CSRF cookie and the session cookie carry Secure
    (a browser never sends them over plain HTTP); served over HTTP (the demo), they cannot."""
    from tests.helpers.tls import self_signed

    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    create_user(engine, "mia", "manager-pass", "manager")
    engine.dispose()
    certificate, key = self_signed(tmp_path / "tls")
    app = create_app(StoreSettings(database_url=url, data_dir=tmp_path / "store"))
    with serve(app, tls=(certificate, key)) as base:
        assert base.startswith("https://")
        with httpx.Client(base_url=base, verify=str(certificate)) as client:
            form = client.get("/login")
            assert "secure" in form.headers["set-cookie"].lower()
            token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
            assert token is not None
            signed_in = client.post(
                "/login",
                data={"username": "mia", "password": "manager-pass", "login_csrf": token[1]},
            )
            session_cookie = next(
                c for c in signed_in.headers.get_list("set-cookie") if c.startswith("lg_session=")
            )
            assert "secure" in session_cookie.lower()
    with serve(create_app(StoreSettings(database_url=url, data_dir=tmp_path / "store"))) as base:
        assert "secure" not in httpx.get(f"{base}/login").headers["set-cookie"].lower()


def test_a_review_against_the_lanes_closing_is_saved_only_once_confirmed(
    console: str, database_url: str
) -> None:
    """lane-1-a2 was closed at the lane as rescanned: "confirmed loss" asks first."""
    with httpx.Client(base_url=console, timeout=10) as client:
        csrf = sign_in(client, "mia", "manager-pass")
        asked = client.post(
            "/alerts/lane-1-a2/review",
            data={"review": "confirmed_loss", "note": "saw it on CCTV", "csrf_token": csrf},
        )
        assert asked.status_code == 409
        assert "closed as rescanned" in asked.text and "anyway" in asked.text
        assert 'name="against_the_lane" value="true"' in asked.text
        assert 'name="note" value="saw it on CCTV"' in asked.text
        assert "not reviewed" in client.get("/alerts/lane-1-a2").text  # nothing saved yet
        confirmed = client.post(
            "/alerts/lane-1-a2/review",
            data={
                "review": "confirmed_loss",
                "note": "saw it on CCTV",
                "against_the_lane": "true",
                "csrf_token": csrf,
            },
        )
        assert confirmed.status_code == 303
        # A review that agrees with the lane is saved at once.
        agreeing = client.post(
            "/alerts/lane-1-a2/review", data={"review": "recovered", "csrf_token": csrf}
        )
        assert agreeing.status_code == 303
    engine = make_engine(database_url)
    with Session(engine) as session:
        record = session.get(AlertRecord, "lane-1-a2")
        assert record is not None and record.review == "recovered"
        reviews = session.exec(
            select(AuditEntry)
            .where(AuditEntry.action == "alert.review")
            .order_by(col(AuditEntry.id))
        ).all()
    engine.dispose()
    assert [r.detail.get("review") for r in reviews] == ["confirmed_loss", "recovered"]
    assert "rescanned" in str(reviews[0].detail.get("against_the_lane"))


def test_a_scan_the_camera_saw_no_item_for_is_marked_quietly_in_the_transaction(
    console: str, database_url: str
) -> None:
    message = transaction("lane-1", 3)
    quiet = message.scanned[0].model_copy(update={"event_id": "s3-unseen", "item_seen": False})
    message = message.model_copy(update={"scanned": [*message.scanned, quiet]})
    with httpx.Client(base_url=console, timeout=10) as client:
        sign_in(client, "mia", "manager-pass")
        lane_credential = enrol(console, database_url, "lane-2")
        reply = httpx.post(
            f"{console}/api/v1/ingest",
            json={"messages": [as_json(message.model_copy(update={"lane_id": "lane-2"}))]},
            headers={"Authorization": f"Bearer {lane_credential}"},
        )
        assert reply.json()["stored"] == 1, reply.text
        listing = client.get("/transactions", params={"lane": "lane-2"}).text
        link = re.search(r'href="/transactions/(\d+)"', listing)
        assert link is not None
        page = client.get(f"/transactions/{link.group(1)}").text
    assert page.count("no item seen") == 1  # the second scan only
    assert "0.420 kg" in page  # the keyed produce's weight


def test_the_console_reads_times_days_and_hours_on_the_stores_clock(
    database_url: str, tmp_path: Path
) -> None:
    """Records are UTC; a store in New York (UTC-5 in November) reads New York time."""
    from datetime import timedelta

    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not an IANA time zone"):
        StoreSettings(database_url=database_url, data_dir=tmp_path, time_zone="Mars/Olympus")
    engine = make_engine(database_url)
    migrate(engine)
    create_user(engine, "mia", "manager-pass", "manager")
    engine.dispose()
    settings = StoreSettings(
        database_url=database_url, data_dir=tmp_path, time_zone="America/New_York"
    )
    late = transaction("lane-1", 7).model_copy(  # 02:00 UTC on the 25th: the 24th, 21:00
        update={"ended_at": NOW + timedelta(hours=17), "message_id": "lane-1:tx:7"}
    )
    with serve(create_app(settings)) as url:
        credential = enrol(url, database_url, "lane-1")
        reply = httpx.post(
            f"{url}/api/v1/ingest",
            json={"messages": [as_json(late), as_json(alert("lane-1", 1))]},
            headers={"Authorization": f"Bearer {credential}"},
        )
        assert reply.json()["stored"] == 2, reply.text
        with httpx.Client(base_url=url, timeout=10) as client:
            sign_in(client, "mia", "manager-pass")
            on_the_24th = client.get("/transactions", params={"day": "2026-11-24"}).text
            on_the_25th = client.get("/transactions", params={"day": "2026-11-25"}).text
            alert_page = client.get("/alerts/lane-1-a1").text
            analytics = client.get("/analytics", params={"days": 366}).text
    row = '<td class="code col-minor">7</td>'
    assert "2026-11-24 21:00:00" in on_the_24th and row in on_the_24th
    assert row not in on_the_25th
    assert "2026-11-24 04:00:00" in alert_page  # raised 09:00 UTC
    hours = re.findall(r'data-hour="(\d\d)" data-count="(\d+)"', analytics)
    assert hours and dict(hours)["04"] == "1" and dict(hours)["09"] == "0"
