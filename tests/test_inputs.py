import csv
import shutil

import pytest

from gcf.errors import GcfError
from gcf.extract.inputs import VideoItem, discover
from gcf.extract.video import iter_clips


def touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_synth_folder_reads_labels_csv(synth_videos):
    data = discover(synth_videos)
    with open(synth_videos / "labels.csv", newline="") as f:
        rows = {r["video"]: r for r in csv.DictReader(f)}
    assert data.class_names == ("class_0", "class_1", "class_2")
    assert [item.video_id for item in data.items] == sorted(rows)
    for item in data.items:
        assert item.path == str(synth_videos / f"{item.video_id}.mp4")
        assert (item.label, item.split) == (rows[item.video_id]["label"], rows[item.video_id]["split"])
        assert data.label_index(item.label) == int(item.label[-1])
    assert data.missing() == []
    assert next(iter_clips(data.items[0].path)).frames.shape == (16, 112, 112, 3)   # the paths open


def test_class_per_folder_and_split_folders(tmp_path):
    touch(tmp_path / "ucf", "Archery/v_a.avi", "Archery/v_b.AVI", "Basketball/x/v_c.mp4", ".hidden/v.mp4",
          "Archery/notes.txt")
    data = discover(tmp_path / "ucf")
    assert [(i.video_id, i.label, i.split) for i in data.items] == [
        ("Archery/v_a", "Archery", ""), ("Archery/v_b", "Archery", ""), ("Basketball/x/v_c", "Basketball", "")]
    touch(tmp_path / "k400", "train/abseiling/a.mp4", "validation/air drumming/b.mkv", "test/c.mp4", "flat.webm")
    data = discover(tmp_path / "k400")
    assert [(i.video_id, i.label, i.split) for i in data.items] == [
        ("flat", None, ""), ("test/c", None, "test"), ("train/abseiling/a", "abseiling", "train"),
        ("validation/air drumming/b", "air drumming", "val")]
    assert data.class_names == ("abseiling", "air drumming") and data.label_index(None) == -1


def test_labels_csv_rows_without_a_file_are_kept_as_missing(synth_videos, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(synth_videos, folder)
    (folder / "class_2" / "vid_001.mp4").unlink()
    data = discover(folder)
    assert len(data.items) == 12
    (missing,) = data.missing()
    assert missing.video_id == "class_2/vid_001" and missing.label == "class_2"


def test_csv_and_plain_lists(tmp_path):
    touch(tmp_path / "data", "a/one.mp4", "a/two.avi", "b/three.mkv")
    absolute = tmp_path / "data" / "b" / "three.mkv"
    lst = write(tmp_path / "data" / "list.csv",
                f"path,label,split\na/one.mp4,walk,train\na/two,run,Validation\n"
                f"{absolute},walk,test\nc/gone.mp4,run,\n")
    data = discover(lst)
    assert [(i.video_id, i.label, i.split) for i in data.items] == [
        ("a/one", "walk", "train"), ("a/two", "run", "val"), ("b/three", "walk", "test"), ("c/gone", "run", "")]
    assert data.items[1].path == str(tmp_path / "data" / "a" / "two.avi")    # found by stem
    assert data.class_names == ("run", "walk")
    assert [i.video_id for i in data.missing()] == ["c/gone"]
    no_header = write(tmp_path / "no_header.csv", "data/a/one.mp4,walk\ndata/b/three.mkv,run,test\n")
    assert [(i.video_id, i.label, i.split) for i in discover(no_header).items] == [
        ("data/a/one", "walk", ""), ("data/b/three", "run", "test")]
    plain = write(tmp_path / "videos.txt", "# my videos\ndata/a/one.mp4\n\ndata/b/three.mkv\n")
    assert [(i.video_id, i.label) for i in discover(plain).items] == [("data/a/one", None), ("data/b/three", None)]
    elsewhere = write(tmp_path / "lists" / "v.txt", "a/one.mp4\nb/three.mkv\n")
    data = discover(elsewhere, root=tmp_path / "data")
    assert [i.video_id for i in data.items] == ["a/one", "b/three"] and data.missing() == []


def test_a_listed_file_name_with_a_comma_is_one_path(tmp_path):
    touch(tmp_path, "a/Hello, world.mp4", "a/plain.mp4")
    lst = write(tmp_path / "videos.txt", "a/Hello, world.mp4\na/plain.mp4,walk\n")
    assert [(i.video_id, i.label) for i in discover(lst).items] == [("a/Hello, world", None), ("a/plain", "walk")]
    labelled = write(tmp_path / "labels.csv", "path,label,split\na/Hello, world.mp4,walk,test\n")
    assert [(i.video_id, i.label, i.split) for i in discover(labelled).items] == [("a/Hello, world", "walk", "test")]


def test_single_video_file(synth_videos):
    path = synth_videos / "class_0" / "vid_000.mp4"
    assert discover(path).items == [VideoItem(str(path), "vid_000", None, "")]


def test_ucf101_split_files(tmp_path):
    root = tmp_path / "UCF-101"
    touch(root, "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "YoYo/v_YoYo_g01_c01.avi",
          "Archery/v_Archery_g01_c01.avi")
    lists = tmp_path / "ucfTrainTestlist"
    write(lists / "classInd.txt", "1 YoYo\n2 ApplyEyeMakeup\n3 Archery\n")    # order from the file, not sorted
    train = write(lists / "trainlist01.txt",
                  "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\r\nYoYo/v_YoYo_g09_c01.avi 1\n")
    test = write(lists / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\nYoYo/v_YoYo_g01_c01.avi\n")
    data = discover([train, test], root=root)
    assert data.class_names == ("YoYo", "ApplyEyeMakeup", "Archery")
    assert [(i.video_id, i.label, i.split) for i in data.items] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "ApplyEyeMakeup", "train"),
        ("Archery/v_Archery_g01_c01", "Archery", "test"),
        ("YoYo/v_YoYo_g01_c01", "YoYo", "test"), ("YoYo/v_YoYo_g09_c01", "YoYo", "train")]
    assert [i.video_id for i in data.missing()] == ["YoYo/v_YoYo_g09_c01"]
    assert discover(root).items[0].video_id == data.items[0].video_id      # same ids as scanning the folder


def test_hmdb51_split_files(tmp_path):
    root = tmp_path / "hmdb51"
    touch(root, "brush_hair/a.avi", "brush_hair/b.avi", "brush_hair/c.avi", "cartwheel/d.avi")
    splits = tmp_path / "splits"
    files = [write(splits / "brush_hair_test_split1.txt", "a.avi 1 \nb.avi 2 \nc.avi 0 \n"),
             write(splits / "cartwheel_test_split1.txt", "d.avi 2\n")]
    data = discover(files, root=root)
    assert [(i.video_id, i.label, i.split) for i in data.items] == [
        ("brush_hair/a", "brush_hair", "train"), ("brush_hair/b", "brush_hair", "test"),
        ("cartwheel/d", "cartwheel", "test")]
    assert data.class_names == ("brush_hair", "cartwheel")
    with pytest.raises(GcfError, match="bad_test_split1.txt:1"):
        discover(write(splits / "bad_test_split1.txt", "a.avi train\n"), root=root)


def test_kinetics_csv_files_in_split_label_folders_or_flat(tmp_path):
    root = tmp_path / "k400"
    touch(root, "train/abseiling/aaa_000010_000020.mp4", "val/zumba/bbb_000000_000010.mkv", "ccc_000005_000015.mp4")
    csv_file = write(tmp_path / "annotations" / "k.csv",
                     "label,youtube_id,time_start,time_end,split,is_cc\n"
                     "abseiling,aaa,10,20,train,0\nzumba,bbb,0.0,10.0,validate,0\n"
                     "zumba,ccc,5,15,train,0\nabseiling,ddd,1,11,train,0\n")
    data = discover(csv_file, root=root)
    assert [(i.video_id, i.label, i.split) for i in data.items] == [
        ("aaa_000010_000020", "abseiling", "train"), ("bbb_000000_000010", "zumba", "val"),
        ("ccc_000005_000015", "zumba", "train"), ("ddd_000001_000011", "abseiling", "train")]
    assert data.items[1].path == str(root / "val" / "zumba" / "bbb_000000_000010.mkv")
    assert [i.video_id for i in data.missing()] == ["ddd_000001_000011"]
    test_csv = write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\nccc,5,15,test\n")
    assert discover(test_csv, root=root).items[0].label is None


def test_same_stem_other_extension_keeps_both(tmp_path, caplog):
    """A video downloaded twice (.mp4 and .mkv) does not stop the run: both are extracted, ids keep the extension,
    a labels.csv row by stem or id labels both; other videos keep plain ids."""
    touch(tmp_path, "walk/a.mp4", "walk/a.mkv", "walk/b.mp4", "run/a.mp4")
    write(tmp_path / "labels.csv", "video,label,split\nwalk/a,walk,test\nwalk/b.mp4,walk,train\n")
    with caplog.at_level("WARNING", logger="gcf"):
        data = discover(tmp_path)
    assert [(i.video_id, i.label, i.split) for i in data.items] == [
        ("run/a", "run", ""), ("walk/a.mkv", "walk", "test"), ("walk/a.mp4", "walk", "test"), ("walk/b", "walk", "train")]
    assert data.items[1].path == str(tmp_path / "walk" / "a.mkv")
    assert "2 files differ only in extension (.mkv, .mp4)" in caplog.text
    write(tmp_path / "labels.csv", "video,label\na,walk\n")   # 'a' is in run/ and walk/: still ambiguous
    with pytest.raises(GcfError, match=r"labels.csv:2: 'a' matches 3 videos"):
        discover(tmp_path)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(GcfError, match="no such file or folder"):
        discover(tmp_path / "nowhere")
    touch(tmp_path, "empty/readme.txt", "dup/a.mp4", "dup/a.mkv", "dup/a.mp4.avi", "v.mp4")
    with pytest.raises(GcfError, match="no videos found"):
        discover(tmp_path / "empty")
    with pytest.raises(GcfError, match=r"video id 'a.mp4' occurs twice .*rename one"):   # a.mp4.avi is 'a.mp4'
        discover(tmp_path / "dup")
    with pytest.raises(GcfError, match="occurs twice"):
        discover([tmp_path / "v.mp4", tmp_path / "v.mp4"])
    with pytest.raises(GcfError, match=r"bad.csv:3: unknown split 'holdout'"):
        discover(write(tmp_path / "bad.csv", "path,label,split\nv.mp4,a,train\nv.mp4,a,holdout\n"))


def test_list_with_no_video_on_disk_asks_for_the_root(tmp_path):
    lists = tmp_path / "splits"
    files = [write(lists / "brush_hair_test_split1.txt", "a.avi 1\n")]
    with pytest.raises(GcfError, match="none of its 1 videos exists under .*--root"):
        discover(files)


def test_a_video_of_any_container_given_directly_is_a_video_and_camera_extensions_are_found(synth_videos, tmp_path):
    src = synth_videos / "class_0" / "vid_000.mp4"
    odd = tmp_path / "take.xyz"                       # a binary file of an unknown extension: not a list
    shutil.copy(src, odd)
    assert discover(odd).items == [VideoItem(str(odd), "take", None, "")]
    for name in ("cam/a.M2TS", "cam/b.mxf", "cam/c.3g2", "cam/d.gif"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(src, tmp_path / name)
    assert [i.video_id for i in discover(tmp_path / "cam").items] == ["a", "b", "c", "d"]
    assert [c.start_frame for c in iter_clips(odd)] == [c.start_frame for c in iter_clips(src)]
    latin = tmp_path / "list.csv"
    latin.write_bytes("caf\xe9.mp4,walk\n".encode("latin-1"))
    with pytest.raises(GcfError, match=r"list.csv: not UTF-8 text; save the list as UTF-8"):
        discover(latin)
