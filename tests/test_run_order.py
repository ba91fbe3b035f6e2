"""The order in which `make reports` starts its labs on a pool: the longest first (course.runner.start_order)."""

from labhelpers.course.index import update_index
from labhelpers.course.reports import LabResult
from labhelpers.course.runner import start_order

STEMS = ["00_setup", "01_small", "02_long", "03_medium", "04_new"]


def test_a_new_report_folder_starts_the_later_labs_first(tmp_path):
    assert start_order(STEMS, tmp_path) == ["04_new", "03_medium", "02_long", "01_small", "00_setup"]


def test_labs_start_longest_first_by_their_last_run_and_unknown_ones_before_them(tmp_path):
    last = {"00_setup": 6.8, "01_small": 14.7, "02_long": 77.8, "03_medium": 23.6}
    update_index(tmp_path, "smoke", [LabResult(stem=stem, status="ok", duration_s=s) for stem, s in last.items()],
                 folders=[])
    assert start_order(STEMS, tmp_path) == ["04_new", "02_long", "03_medium", "01_small", "00_setup"]
    assert start_order(["00_setup", "02_long"], tmp_path) == ["02_long", "00_setup"]
