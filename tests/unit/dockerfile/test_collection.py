"""Real-world Dockerfile shapes (tests/fixtures/dockerfiles, each naming the public Dockerfile it
is modelled on) and the bases BuildKit would resolve for them."""
import json
from pathlib import Path

import pytest

from basewatch.dockerfile.analysis import analyse_dockerfile_path

FOLDER = Path(__file__).resolve().parents[2] / "fixtures" / "dockerfiles"
COLLECTION = json.loads((FOLDER / "expected.json").read_text())
CASES = [pytest.param(entry["file"], case, id=f"{entry['file']}-{number}")
         for entry in COLLECTION for number, case in enumerate(entry["cases"])]


def test_the_collection_is_complete_and_names_its_sources():
    files = sorted(path.name for path in FOLDER.glob("*.Dockerfile"))
    assert files == sorted(entry["file"] for entry in COLLECTION)
    assert 15 <= len(files) <= 30
    for entry in COLLECTION:
        header = (FOLDER / entry["file"]).read_text().split("FROM", 1)[0]
        assert f"Modelled on {entry['modelled_on'].split(' (')[0]}" in header, entry["file"]


@pytest.mark.parametrize("name, case", CASES)
def test_bases_of_real_dockerfiles(name, case):
    bases = analyse_dockerfile_path(FOLDER / name, case.get("build_args"), case.get("target"),
                                    platform=case["platform"], build_platform="linux/amd64")
    assert bases.to_json() == {"runtime": case["runtime"], "buildtime": case["buildtime"]}
