"""The slow path's camera frames (issue #35): which frames teach, how unknown boxes are kept out
of the lesson, and how each lane's newest transactions are held out for the gate."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
from sqlmodel import Session

from product_db.db import make_engine
from product_db.models import utcnow
from store_server.db import migrate
from store_server.media import MediaStore
from store_server.models import DetectionFrame, TransactionRecord
from trainer.store_frames import StoreFrame, harvested_frames, split_frames, write_yolo

PRODUCT = {"box": [100.0, 120.0, 200.0, 240.0], "label": "product", "kind": "track", "score": 0.9}
UNKNOWN = {
    "box": [400.0, 300.0, 460.0, 380.0],
    "label": "product",
    "kind": "of_interest",
    "score": 0.3,
}
FALSE = {"box": [10.0, 10.0, 60.0, 60.0], "label": "product", "kind": "not_an_item", "score": 0.6}


def jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def test_only_vouched_labelled_frames_teach(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    media = MediaStore(tmp_path / "media")
    now = utcnow()
    rows = [  # (lane, transaction, reason, review, honest transaction at the store?)
        ("lane-1", "t1", "honest", "pending", True),
        ("lane-1", "t2", "honest", "pending", False),  # the store holds it as dishonest
        ("lane-1", "t3", "honest", "pending", None),  # the store never got the transaction
        ("lane-1", "t4", "not_an_item", "pending", False),  # the cashier's word alone
        ("lane-1", "t9", "not_an_item", "reviewed", False),  # ... checked by a person
        ("lane-1", "t5", "low_score", "pending", True),  # waits for the teacher or a person
        ("lane-2", "t6", "honest", "rejected", True),  # a manager rejected it
        ("lane-2", "t7", "low_score", "teacher", True),  # every unsure box has a verdict
        ("lane-2", "t8", "unseen_scan", "needs_review", True),  # a person has yet to look
        ("lane-2", "t10", "unseen_scan", "teacher", True),  # the missed item has no box
    ]
    with Session(engine) as session:
        for n, (lane, tx, reason, review, honest) in enumerate(rows):
            session.add(
                DetectionFrame(
                    message_id=f"{lane}:frame:{n}",
                    lane_id=lane,
                    transaction_id=tx,
                    reason=reason,
                    captured_at=now - timedelta(minutes=10 - n),
                    model_version="test",
                    width=640,
                    height=480,
                    boxes=[PRODUCT, FALSE] if reason == "not_an_item" else [PRODUCT],
                    image=media.save(jpeg(n)),
                    review=review,
                )
            )
            if honest is not None:
                session.add(
                    TransactionRecord(
                        lane_id=lane,
                        transaction_id=tx,
                        started_at=now,
                        ended_at=now,
                        honest=honest,
                        n_seen=1,
                        n_scanned=1,
                        seen=[],
                        scanned=[],
                        alert_ids=[],
                    )
                )
        session.commit()
    frames = harvested_frames(engine, media)
    assert [(f.transaction_id, f.reason) for f in frames] == [
        ("t1", "honest"),
        ("t9", "not_an_item"),
        ("t7", "low_score"),
    ]
    engine.dispose()


def frame(n: int, lane: str, tx: str, minutes: int, image: Path, boxes: tuple) -> StoreFrame:  # type: ignore[type-arg]
    return StoreFrame(
        n, lane, tx, utcnow() - timedelta(minutes=minutes), "honest", image, 640, 480, boxes
    )


def test_unknown_boxes_are_painted_grey_and_true_ones_labelled(tmp_path: Path) -> None:
    picture = tmp_path / "frame.jpg"
    picture.write_bytes(jpeg(1))
    said_yes = {**UNKNOWN, "box": [300.0, 40.0, 364.0, 120.0], "verdict": "yes", "by": "teacher"}
    said_no = {**UNKNOWN, "box": [500.0, 40.0, 560.0, 100.0], "verdict": "no", "by": "manager"}
    shot = frame(7, "lane-1", "t1", 1, picture, (PRODUCT, UNKNOWN, FALSE, said_yes, said_no))
    assert write_yolo([shot], tmp_path / "yolo", "train") == 1
    image = cv2.imread(str(tmp_path / "yolo" / "images" / "train" / "store_lane-1_00000007.jpg"))
    assert image is not None
    unknown = image[308:372, 408:452].astype(float)  # inside its edges (JPEG rings there)
    assert abs(unknown.mean() - 114) < 2 and unknown.std() < 4, "no picture left to learn from"
    false = image[18:52, 18:52].astype(float)
    assert abs(false.mean() - 114) < 2 and false.std() < 4, "a cashier's word alone: grey"
    checked = frame(8, "lane-1", "t1", 1, picture, ({**FALSE, "verdict": "no", "by": "manager"},))
    write_yolo([checked], tmp_path / "yolo", "train")
    kept = cv2.imread(str(tmp_path / "yolo" / "images" / "train" / "store_lane-1_00000008.jpg"))
    assert kept is not None and kept[15:55, 15:55].std() > 30, "checked: background as it is"
    assert image[45:95, 505:555].std() > 30, "a box given 'no' stays as it was too"
    labels = (tmp_path / "yolo" / "labels" / "train" / "store_lane-1_00000007.txt").read_text()
    assert labels.splitlines() == [
        "0 0.234375 0.375000 0.156250 0.250000",
        "0 0.518750 0.166667 0.100000 0.166667",  # the box the teacher said yes to
    ]


def test_each_lane_holds_out_its_newest_transactions(tmp_path: Path) -> None:
    picture = tmp_path / "frame.jpg"
    picture.write_bytes(jpeg(2))
    frames = [
        frame(n, lane, f"{lane}-t{k}", 100 - k, picture, (PRODUCT,))
        for n, (lane, k) in enumerate(
            [(lane, k) for lane in ("lane-1", "lane-2") for k in range(8) for _ in range(2)]
        )
    ]
    frames.append(frame(99, "lane-3", "lane-3-t0", 5, picture, (PRODUCT,)))  # one transaction
    split = split_frames(frames, test_fraction=0.25)
    assert set(split.test) == {"lane-1", "lane-2"}, "a lane with one transaction only trains"
    for lane in ("lane-1", "lane-2"):
        assert {f.transaction_id for f in split.test[lane]} == {f"{lane}-t6", f"{lane}-t7"}
    held = {f.frame_id for frames in split.test.values() for f in frames}
    assert not held & {f.frame_id for f in split.train} and len(split.train) == 25
