"""image.snapshots.volatile: an --rm container's overlay mount options."""

from berth.image.snapshots import Mount, volatile


def test_volatile_marks_overlays_and_clears_a_previous_mounts_mark(tmp_path):
    work = tmp_path / "work"
    (work / "work" / "incompat" / "volatile").mkdir(parents=True)
    overlay = Mount("overlay", "overlay", ["lowerdir=/l", "upperdir=/u", f"workdir={work}",
                                           "index=off"])
    bind = Mount("bind", "/x", ["rbind", "rw"])
    ro = Mount("overlay", "overlay", ["lowerdir=/a:/b"])
    out = volatile([overlay, bind, ro])
    assert out[0].options == [*overlay.options, "volatile"]
    assert out[1:] == [bind, ro]
    # the kernel refuses a work directory a volatile mount used until this goes
    assert not (work / "work" / "incompat").exists()
    assert (work / "work").is_dir()


def test_volatile_with_options_relative_to_a_directory(tmp_path):
    (tmp_path / "snap" / "work" / "work" / "incompat" / "volatile").mkdir(parents=True)
    m = Mount("overlay", "overlay", ["lowerdir=a", "upperdir=snap/fs", "workdir=snap/work"],
              str(tmp_path))
    assert volatile([m])[0].cwd == str(tmp_path)
    assert not (tmp_path / "snap" / "work" / "work" / "incompat").exists()
