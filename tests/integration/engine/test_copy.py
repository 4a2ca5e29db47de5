"""cp (both directions, tar streams, symlinks pointing out of the rootfs),
export, diff and commit: what Docker prints and does."""

import io
import os
import re
import tarfile


def _read(path):
    with open(path) as f:
        return f.read()


def _stopped(b, name, script):
    b.run("--name", name, "busybox", "sh", "-c", script, check=True)


def _running(b, name, script="true"):
    b.run("-d", "--name", name, "busybox", "sh", "-c",
          f"{script}; while true; do sleep 0.1; done", check=True)


def test_cp_out_file_and_dir(berth, workdir):
    b = berth
    _stopped(b, "c1", "mkdir -p /d/sub && echo one > /d/f && echo two > /d/sub/g")
    assert b("cp", "c1:/d/f", f"{workdir}/f").returncode == 0
    assert _read(f"{workdir}/f") == "one\n"
    # into an existing directory: under its base name
    os.mkdir(f"{workdir}/out")
    b("cp", "c1:/d", f"{workdir}/out", check=True)
    assert _read(f"{workdir}/out/d/sub/g") == "two\n"
    # to a new name: the directory itself
    b("cp", "c1:/d", f"{workdir}/new", check=True)
    assert sorted(os.listdir(f"{workdir}/new")) == ["f", "sub"]


def test_cp_running_and_tar_streams(berth, workdir):
    b = berth
    _running(b, "r1", "echo hi > /hello")
    res = b("cp", "r1:/hello", "-", check=True)
    with tarfile.open(fileobj=io.BytesIO(res.stdout.encode()), mode="r:") as tf:
        m = tf.getmember("hello")
        assert tf.extractfile(m).read() == b"hi\n"
    # a tar stream in
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"streamed\n"
        ti = tarfile.TarInfo("s/in.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    b("cp", "-", "r1:/tmp", input=buf.getvalue(), check=True)
    assert b.out("exec", "r1", "cat", "/tmp/s/in.txt") == "streamed\n"
    # a file and a directory in
    with open(f"{workdir}/hf", "w") as f:
        f.write("host file\n")
    os.makedirs(f"{workdir}/hd/x")
    with open(f"{workdir}/hd/x/y", "w") as f:
        f.write("deep\n")
    b("cp", f"{workdir}/hf", "r1:/hf2", check=True)
    b("cp", f"{workdir}/hd", "r1:/tmp", check=True)
    assert b.out("exec", "r1", "cat", "/hf2", "/tmp/hd/x/y") == "host file\ndeep\n"
    assert b.out("exec", "r1", "stat", "-c", "%u", "/hf2") == "0\n"


def test_cp_in_stopped_container(berth, workdir):
    b = berth
    b("create", "--name", "s1", "busybox", "cat", "/copied", check=True)
    with open(f"{workdir}/copied", "w") as f:
        f.write("in a stopped one\n")
    b("cp", f"{workdir}/copied", "s1:/", check=True)
    assert b.out("start", "-a", "s1") == "in a stopped one\n"


def test_cp_symlink_to_host_etc(berth, workdir):
    b = berth
    _stopped(b, "evil", "ln -s /etc /x && echo container-root:x:0:0::/:/bin/sh > /etc/passwd "
             "&& ln -s /etc/passwd /abs && mkdir /a && ln -s /etc/passwd /a/b")
    b("cp", "evil:/x/passwd", f"{workdir}/passwd", check=True)
    assert _read(f"{workdir}/passwd") == "container-root:x:0:0::/:/bin/sh\n"
    # -L: the final link is followed inside the container too
    b("cp", "-L", "evil:/abs", f"{workdir}/abs", check=True)
    assert _read(f"{workdir}/abs") == "container-root:x:0:0::/:/bin/sh\n"
    b("cp", "-L", "evil:/a/b", f"{workdir}/ab", check=True)
    assert _read(f"{workdir}/ab") == "container-root:x:0:0::/:/bin/sh\n"
    # without -L the link itself is copied
    b("cp", "evil:/abs", f"{workdir}/link", check=True)
    assert os.readlink(f"{workdir}/link") == "/etc/passwd"
    # writing through the link lands in the container's /etc, never the host's
    with open(f"{workdir}/newfile", "w") as f:
        f.write("x\n")
    assert not os.path.exists("/etc/berth-cp-test-newfile")
    b("cp", f"{workdir}/newfile", "evil:/x/berth-cp-test-newfile", check=True)
    assert not os.path.exists("/etc/berth-cp-test-newfile")
    out = b("cp", "evil:/etc/berth-cp-test-newfile", "-", check=True).stdout
    assert "x\n" in out


def test_cp_running_container_swap_race(berth, workdir):
    """CVE-2018-15664: the container swaps a directory for a link to / while
    we copy; whatever we get comes from the container."""
    b = berth
    _running(b, "race", "mkdir -p /w/d && echo mine > /w/d/passwd; "
             "(while true; do mv /w/d /w/real 2>/dev/null; ln -sfn /etc /w/d; "
             "rm -f /w/d; mv /w/real /w/d; done) &")
    host = _read("/etc/passwd")
    for i in range(30):
        res = b("cp", "race:/w/d/passwd", f"{workdir}/p{i}")
        if res.returncode == 0 and os.path.isfile(f"{workdir}/p{i}"):
            assert _read(f"{workdir}/p{i}") != host or host == "mine\n"
    with open(f"{workdir}/in", "w") as f:
        f.write("never on the host\n")
    for _ in range(20):
        b("cp", f"{workdir}/in", "race:/w/d/berth-race-file")
        assert not os.path.exists("/etc/berth-race-file")


def test_cp_errors(berth, workdir):
    b = berth
    _stopped(b, "e1", "true")
    res = b("cp", "nope:/etc/passwd", f"{workdir}/x")
    assert res.returncode == 1
    assert res.stderr == "Error response from daemon: No such container: nope\n"
    res = b("cp", "e1:/missing", f"{workdir}/x")
    assert res.returncode == 1
    assert "Could not find the file /missing in container e1" in res.stderr
    assert not os.path.exists(f"{workdir}/x")
    res = b("cp", f"{workdir}/missing", "e1:/")
    assert res.returncode == 1
    assert res.stderr == f"lstat {workdir}/missing: no such file or directory\n"
    res = b("cp", f"{workdir}", f"{workdir}/y")
    assert res.returncode == 1 and "must specify at least one container" in res.stderr
    assert not os.path.exists(f"{workdir}/y")
    res = b("cp", "--bogus", "e1:/", f"{workdir}/y")
    assert res.returncode == 125 and "unknown flag: --bogus" in res.stderr


def test_export(berth, workdir):
    b = berth
    _stopped(b, "x1", "echo exported > /marker")
    b("export", "-o", f"{workdir}/x.tar", "x1", check=True)
    with tarfile.open(f"{workdir}/x.tar") as tf:
        names = set(tf.getnames())
        assert "marker" in names and "bin/sh" in names
        assert tf.extractfile("marker").read() == b"exported\n"
    assert os.path.getsize(f"{workdir}/x.tar") < 20 * 1024 * 1024  # hardlinks kept
    res = b("export", "nope", "-o", f"{workdir}/n.tar")
    assert res.returncode == 1 and "No such container: nope" in res.stderr
    assert not os.path.exists(f"{workdir}/n.tar")


def test_diff(berth):
    b = berth
    _stopped(b, "d1", "echo new > /added && echo changed >> /etc/group && rm /etc/shadow "
             "2>/dev/null; rm -f /bin/vi; mkdir /newdir")
    lines = b.out("diff", "d1").splitlines()
    assert "A /added" in lines and "A /newdir" in lines
    assert "C /etc/group" in lines and "C /etc" in lines
    assert "D /bin/vi" in lines
    assert all(re.fullmatch(r"[ACD] /\S+", ln) for ln in lines)
    res = b("diff", "nope")
    assert res.returncode == 1 and "No such container: nope" in res.stderr


def test_commit_then_run(berth):
    b = berth
    _stopped(b, "m1", "echo committed > /hello && rm /bin/vi")
    res = b("commit", "-m", "msg", "-a", "me", "-c", "ENV FOO=bar", "m1", "mine:v1", check=True)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", res.stdout)
    out = b.run("--rm", "mine:v1", "sh", "-c", "cat /hello; echo $FOO; ls /bin/vi",
                check=False)
    assert out.stdout.startswith("committed\nbar\n")
    assert "images" in b.out("images") or "mine" in b.out("images")
    res = b("commit", "nope", "x:y")
    assert res.returncode == 1 and "No such container: nope" in res.stderr


def test_commit_running_container(berth):
    b = berth
    _running(b, "live", "echo live > /state")
    res = b("commit", "live", check=True)
    image_id = res.stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    assert b.out("inspect", "-f", "{{.State.Status}}", "live") == "running\n"
    assert b.run("--rm", image_id, "cat", "/state", check=True).stdout == "live\n"
