"""evshm.targets: FolderClass learns and checks its classes; Boxes reads both layouts
of Prophesee's label files and returns the boxes of a window."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from evshm.targets import Boxes, FolderClass, bbox_dtype

#: The Gen1 release's label files: times unsigned and named ts, confidence before track.
GEN1_DTYPE = np.dtype([("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"),
                       ("h", "<f4"), ("class_id", "u1"), ("confidence", "<f4"),
                       ("track_id", "<u4")])


def test_folder_class_learns_sorted_classes_from_the_first_dataset():
    target = FolderClass()
    target.fit(["train/cars/a.dat", "train/background/b.dat", "train/cars/c.dat"])
    assert target.classes == ["background", "cars"]
    assert target.class_to_idx == {"background": 0, "cars": 1}
    assert target("train/cars/a.dat", 0, 50_000) == 1
    assert target("val/background/z.dat", 0, 50_000) == 0  # the folder's name counts
    target.fit(["val/cars/d.dat"])  # a validation set: checked against the known classes
    assert target.classes == ["background", "cars"]
    with pytest.raises(ValueError, match=r"classes \['trucks'\] are not among"):
        target.fit(["val/trucks/e.dat"])
    with pytest.raises(ValueError, match=r"not in a class folder, e.g. 'loose\.raw'"):
        FolderClass().fit(["loose.raw", "cars/a.raw"])
    with pytest.raises(ValueError, match="no classes yet"):
        FolderClass()("cars/a.raw", 0, 1)
    fixed = FolderClass(["zebra", "ant", "ant"])
    assert fixed.classes == ["ant", "zebra"]
    with pytest.raises(ValueError, match="in folder 'cars', not one of"):
        fixed("cars/a.raw", 0, 1)
    clone = pickle.loads(pickle.dumps(target))
    assert clone.classes == target.classes and clone("x/cars/y.raw", 0, 1) == 1


def write_labels(path: Path, dtype: np.dtype, times: list[int]) -> np.ndarray:
    boxes = np.zeros(len(times), dtype=dtype)
    time_field = "ts" if "ts" in (dtype.names or ()) else "t"
    boxes[time_field] = times
    boxes["x"] = np.arange(len(times)) * 10.5
    boxes["w"], boxes["h"], boxes["class_id"] = 20.0, 12.5, np.arange(len(times)) % 2
    boxes["track_id"] = np.arange(len(times)) + 100
    confidence = "confidence" if "confidence" in (dtype.names or ()) else "class_confidence"
    boxes[confidence] = 0.5
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, boxes)
    return boxes


@pytest.mark.parametrize("layout", ["gen1", "current"])
def test_boxes_of_a_window(tmp_path: Path, layout: str):
    dtype = GEN1_DTYPE if layout == "gen1" else bbox_dtype()
    times = [50_000, 100_000, 100_000, 150_000, 20_000]  # one out of order
    write_labels(tmp_path / "train" / "drive_0_bbox.npy", dtype, times)
    boxes = Boxes(tmp_path)
    assert boxes.label_file("train/drive_0_td.dat") == str(tmp_path / "train" /
                                                          "drive_0_bbox.npy")
    assert boxes.label_file("train/drive_0.raw") == str(tmp_path / "train" / "drive_0_bbox.npy")
    got = boxes("train/drive_0_td.dat", 100_000, 150_001)
    assert got.dtype == bbox_dtype() and not got.flags.writeable
    assert got["t"].tolist() == [100_000, 100_000, 150_000]  # [t_start, t_end), by time
    assert got["x"].tolist() == [10.5, 21.0, 31.5]
    assert got["track_id"].tolist() == [101, 102, 103]
    assert got["class_confidence"].tolist() == [0.5] * 3
    assert boxes("train/drive_0_td.dat", 100_001, 150_000).size == 0
    assert boxes("train/drive_0_td.dat", 0, 1 << 40)["t"].tolist() == sorted(times)
    assert boxes("train/unlabelled_td.dat", 0, 1 << 40).size == 0  # no file: no boxes
    with pytest.raises(FileNotFoundError):
        Boxes(tmp_path, missing_ok=False)("train/unlabelled_td.dat", 0, 1)
    clone = pickle.loads(pickle.dumps(boxes))
    assert len(pickle.dumps(boxes)) < 300  # the root, not the labels read
    assert np.array_equal(clone("train/drive_0_td.dat", 0, 1 << 40),
                          boxes("train/drive_0_td.dat", 0, 1 << 40))


def test_a_file_that_holds_no_boxes_is_refused(tmp_path: Path):
    np.save(tmp_path / "a_bbox.npy", np.zeros(3, dtype=[("t", "<i8"), ("x", "<f4")]))
    with pytest.raises(ValueError, match="not a file of boxes"):
        Boxes(tmp_path)("a_td.dat", 0, 10)
