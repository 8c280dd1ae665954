"""What ``qfm-iqm score`` lists: each real file once, through globs, ``--recursive`` and links, never looping."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from qfm_iqm.deploy.listing import expand


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """photos/2024/a.jpg and photos/b.jpg; photos/current -> . and photos/loop -> .. (loops); photos/extra ->
    ../other, a folder outside with c.jpg; photos/same.jpg -> b.jpg."""
    photos = tmp_path / "photos"
    (photos / "2024").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    for path in (photos / "2024/a.jpg", photos / "b.jpg", tmp_path / "other/c.jpg"):
        path.write_bytes(b"x")
    (photos / "current").symlink_to(".")
    (photos / "loop").symlink_to("..")
    (photos / "extra").symlink_to("../other")
    (photos / "same.jpg").symlink_to("b.jpg")
    return photos


def names(listed: list, root: Path) -> list[str]:
    assert not any(item.error for item in listed)
    return [str(item.path.relative_to(root)) for item in listed]


@pytest.mark.parametrize("args", [["{p}"], ["{p}/**/*.jpg"], ["{p}/**"]])
def test_globs_and_recursion_list_each_real_file_once_and_report_the_links_skipped(linked: Path, args: list[str],
                                                                                   caplog) -> None:
    with caplog.at_level(logging.WARNING):
        listed = expand([a.format(p=linked) for a in args], recursive=True)
    assert names(listed, linked) == ["2024/a.jpg", "b.jpg", "extra/c.jpg"]
    skipped = sorted(r.getMessage().split(":")[0] for r in caplog.records)
    assert skipped == [f"skipped {linked / 'current'}", f"skipped {linked / 'loop'}", f"skipped {linked / 'same.jpg'}"]
    assert "a folder above it (a loop)" in caplog.text and f"the same file as {linked / 'b.jpg'}" in caplog.text


def test_two_loops_in_one_folder_end_quickly(linked: Path) -> None:
    """Python's glob would walk 2^40 paths here (a/b/a/b/...) before the system's link limit stops it."""
    (linked / "2024" / "up").symlink_to("..")
    (linked / "2024" / "here").symlink_to(".")
    assert names(expand([f"{linked}/**/*.jpg"], recursive=True), linked) == ["2024/a.jpg", "b.jpg", "extra/c.jpg"]


def test_the_real_name_wins_over_a_link_listed_first(tmp_path: Path, caplog) -> None:
    (tmp_path / "z.jpg").write_bytes(b"x")
    (tmp_path / "a.jpg").symlink_to("z.jpg")
    with caplog.at_level(logging.WARNING):
        assert names(expand([str(tmp_path), str(tmp_path / "z.jpg")], recursive=False), tmp_path) == ["z.jpg"]
    assert f"skipped {tmp_path / 'a.jpg'}: the same file as {tmp_path / 'z.jpg'}" in caplog.text


def test_without_recursive_subfolders_and_links_to_them_are_not_listed(linked: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        assert names(expand([str(linked)], recursive=False), linked) == ["b.jpg"]
        assert names(expand([f"{linked}/*/*.jpg"], recursive=False), linked) == ["2024/a.jpg", "current/b.jpg",
                                                                                 "extra/c.jpg"]
    assert f"skipped {linked / 'same.jpg'}" in caplog.text


def test_a_glob_that_matches_nothing_and_a_hidden_file_are_as_before(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/.hidden.jpg").write_bytes(b"x")
    (tmp_path / "d/seen.jpg").write_bytes(b"x")
    assert names(expand([f"{tmp_path}/**/*.jpg"], recursive=True), tmp_path) == ["d/seen.jpg"]
    [missing] = expand([f"{tmp_path}/none/**/*.png"], recursive=True)
    assert missing.error == f"no files match {tmp_path}/none/**/*.png"
