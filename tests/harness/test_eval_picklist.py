"""`laneguard eval picklist` on real produce photos with the shipped embedder: the pick list's
hit shares at positions 1, 2 and 4, with and without a store's sales as the prior, and a prior
file it cannot use refused with the line named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.evals.picklist import PicklistError, read_prior

CLASSES = ("Banana", "Golden-Delicious", "Granny-Smith", "Lime", "Lemon", "Red-Delicious")


@pytest.fixture(scope="module")
def folders(produce_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six look-alike-rich classes: 3 train photos each as references, 4 test photos as queries
    (links to the real files, never copies)."""
    root = tmp_path_factory.mktemp("picklist")
    for split, folder, count in (("train", "ref", 3), ("test", "query", 4)):
        for name in CLASSES:
            photos = sorted((produce_photos / "images" / split / name).glob("*.jpg"))[:count]
            assert len(photos) == count, f"{name}: not enough {split} photos"
            (root / folder / name).mkdir(parents=True)
            for photo in photos:
                (root / folder / name / photo.name).symlink_to(photo)
    return root


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "laneguard.cli", "eval", "picklist", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pick_list_hit_shares_on_real_produce_with_and_without_sales(
    folders: Path, tmp_path: Path
) -> None:
    flat = run("--reference", str(folders / "ref"), "--query", str(folders / "query"))
    assert flat.returncode == 0, flat.stderr
    result = json.loads(flat.stdout)
    assert set(result) >= {"top1", "top2", "top4", "per_class", "n_reference", "n_query"}
    assert result["n_reference"] == 18 and result["n_query"] == 24 and result["prior"] is None
    assert result["top1"] <= result["top2"] <= result["top4"]
    assert result["top4"] >= 0.75, "the shipped embedder lists the right fruit in its top 4"
    assert set(result["per_class"]) == set(CLASSES)

    # A store that sells bananas and little else: the prior can only move the order.
    prior = tmp_path / "sales.csv"
    prior.write_text("code,count\nBanana,5000\nLime,3\n", "utf-8")
    weighed = run(
        "--reference",
        str(folders / "ref"),
        "--query",
        str(folders / "query"),
        "--prior",
        str(prior),
    )
    assert weighed.returncode == 0, weighed.stderr
    with_prior = json.loads(weighed.stdout)
    assert with_prior["prior"] == str(prior)
    assert with_prior["per_class"]["Banana"] >= result["per_class"]["Banana"]
    assert "torch" not in weighed.stderr


def test_a_prior_it_cannot_use_is_refused_naming_the_line(tmp_path: Path, folders: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("code,count\n4011,12\n4131,many\n", "utf-8")
    with pytest.raises(PicklistError, match=r"bad.csv:3: each row needs a code and a whole number"):
        read_prior(bad)
    refused = run(
        "--reference", str(folders / "ref"), "--query", str(folders / "query"), "--prior", str(bad)
    )
    assert refused.returncode != 0 and "bad.csv:3" in refused.stderr
    good = tmp_path / "good.csv"
    good.write_text("code,count\n4011,12\n4011,3\n", "utf-8")
    assert read_prior(good).counts == {"4011": 15}
