"""The engine on a real distribution: a Debian bookworm image made with
debootstrap (minbase, cached per machine; see tests/debian.py). What the
container sees (users and groups from the image's /etc/passwd and /etc/group,
env, working directory, mounts and their owners, limits, names), and what the
CLI prints, as Docker prints it."""

import os
import re
import time

IMAGE = "debian:bookworm"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's /etc/hosts for a container without a network of its own
HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
         "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
         "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
# zombies in the container's pid namespace, counted by bash alone (minbase has no ps)
ZOMBIES = ("n=0; for s in /proc/[0-9]*/stat; do read -r l < $s 2>/dev/null || continue; "
           "st=${l##*) }; [ \"${st%% *}\" = Z ] && n=$((n+1)); done; echo $n")


def until(fn, what: str, tries: int = 200, pause: float = 0.05):
    """fn() until it returns something true (a bounded wait, not a timing check)."""
    for _ in range(tries):
        v = fn()
        if v:
            return v
        time.sleep(pause)
    raise AssertionError(f"never happened: {what}")


def test_image_is_debian(debian):
    assert IMAGE.split(":")[0] in debian.out("images", "--format", "{{.Repository}}").split()
    p = debian.run("--rm", IMAGE, "bash", "-c", ". /etc/os-release; echo $ID $VERSION_CODENAME; "
                   "dpkg-query -W -f '${Package}\\n' bash coreutils passwd")
    assert p.stdout.split("\n")[:4] == ["debian bookworm", "bash", "coreutils", "passwd"], p.stderr


def test_users_and_groups_from_the_image(debian_rt):
    """`-u` resolved from the image's /etc/passwd and /etc/group, `id` as it
    prints under Docker (runc's GetExecUser rules)."""
    expect = {
        "": "uid=0(root) gid=0(root) groups=0(root)",
        "nobody": "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)",
        "www-data": "uid=33(www-data) gid=33(www-data) groups=33(www-data)",
        "daemon:tty": "uid=1(daemon) gid=5(tty) groups=5(tty)",
        "mail:users": "uid=8(mail) gid=100(users) groups=100(users)",
        "33": "uid=33(www-data) gid=33(www-data) groups=33(www-data)",
        "1000": "uid=1000 gid=0(root) groups=0(root)",
        "1000:1000": "uid=1000 gid=1000 groups=1000",
        "nobody:42": "uid=65534(nobody) gid=42(shadow) groups=42(shadow)",
    }
    for user, want in expect.items():
        args = ["-u", user] if user else []
        p = debian_rt.run("--rm", *args, IMAGE, "id")
        assert (p.returncode, p.stdout.strip()) == (0, want), (user, p.stderr)
    p = debian_rt.run("--rm", "-u", "alice", IMAGE, "id")
    assert p.returncode == 125
    assert "unable to find user alice: no matching entries in passwd file" in p.stderr
    p = debian_rt.run("--rm", "-u", "nobody:nosuchgroup", IMAGE, "id")
    assert p.returncode == 125
    assert "unable to find group nosuchgroup: no matching entries in group file" in p.stderr
    assert debian_rt.out("ps", "-aq") == ""


def test_env_defaults_home_and_path(debian_rt):
    """Docker's environment: PATH, HOSTNAME, and HOME from the user's passwd
    entry (set by the runtime, as runc does); -e overrides and adds."""
    p = debian_rt.run("--rm", "--hostname", "envbox", IMAGE, "env")
    assert sorted(p.stdout.split()) == sorted(
        [f"PATH={PATH}", "HOSTNAME=envbox", "HOME=/root"]), p.stderr
    p = debian_rt.run("--rm", "-u", "www-data", "-e", "A=1", "-e", "PATH=/bin", IMAGE,
                      "bash", "-c", "echo $HOME $A $PATH")
    assert p.stdout == "/var/www 1 /bin\n", p.stderr
    # no passwd entry: "/"; an explicit HOME wins
    p = debian_rt.run("--rm", "-u", "4321", IMAGE, "bash", "-c", "echo $HOME")
    assert p.stdout == "/\n", p.stderr
    p = debian_rt.run("--rm", "-u", "nobody", "-e", "HOME=/tmp", IMAGE, "bash", "-c",
                      "echo $HOME")
    assert p.stdout == "/tmp\n", p.stderr


def test_working_dir(debian):
    p = debian.run("--rm", IMAGE, "pwd")
    assert p.stdout == "/\n"
    # a missing -w is made (root's), an existing one kept as the image has it
    p = debian.run("--rm", "-w", "/srv/app/new", IMAGE, "bash", "-c",
                   "pwd; stat -c '%U %a' .")
    assert p.stdout.split("\n")[:2] == ["/srv/app/new", "root 755"], p.stderr
    p = debian.run("--rm", "-u", "www-data", "-w", "/var/www", IMAGE, "bash", "-c",
                   "pwd; touch /var/www/x 2>/dev/null || echo denied")
    assert p.stdout.split() == ["/var/www", "denied"], p.stderr  # /var/www is root's


def test_commit_user_groups_home_then_run(debian):
    """A user added in a container, committed with USER and WORKDIR: the new
    image's containers run as that user, with the supplementary groups
    /etc/group gives it, and its home."""
    p = debian.run("--name", "adduser", IMAGE, "useradd", "-m", "-s", "/bin/bash",
                   "-G", "tty,www-data", "alice")
    assert p.returncode == 0, p.stderr
    img = debian.out("commit", "-c", "USER alice", "-c", "WORKDIR /home/alice",
                     "adduser", "debian:alice").strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", img)
    assert debian.out("inspect", "-f", "{{.Config.User}} {{.Config.WorkingDir}}",
                      "debian:alice") == "alice /home/alice\n"
    debian.out("rm", "adduser")
    p = debian.run("--rm", "debian:alice", "bash", "-c", "id; echo $HOME; pwd; "
                   "stat -c '%U:%G' $HOME; touch $HOME/mine && echo writable")
    assert p.stdout.split("\n")[:5] == [
        "uid=1000(alice) gid=1000(alice) groups=1000(alice),5(tty),33(www-data)",
        "/home/alice", "/home/alice", "alice:alice", "writable"], p.stderr
    # a named group replaces them all
    p = debian.run("--rm", "-u", "alice:www-data", "debian:alice", "id")
    assert p.stdout == "uid=1000(alice) gid=33(www-data) groups=33(www-data)\n"
    p = debian.run("--rm", "-u", "root", "debian:alice", "bash", "-c", "id -u; echo $HOME")
    assert p.stdout.split() == ["0", "/root"]
    # the image the commit made is listed as Docker lists it
    lines = debian.out("images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    row = next(ln.split() for ln in lines if ln.startswith("debian ") and " alice " in ln)
    assert row[2] == img.split(":")[1][:12]


def test_read_only_root_with_tmpfs(debian):
    p = debian.run("--rm", "--read-only", "--tmpfs", "/run", "--tmpfs", "/tmp:size=1m",
                   IMAGE, "bash", "-c",
                   "touch /etc/x 2>&1; echo rc=$?; touch /tmp/y /run/z && echo tmp-ok; "
                   "stat -c '%a' /tmp; grep -E ' /(tmp|run) ' /proc/mounts | cut -d' ' -f2-4")
    lines = p.stdout.split("\n")
    assert lines[:4] == ["touch: cannot touch '/etc/x': Read-only file system", "rc=1",
                         "tmp-ok", "1777"], p.stdout + p.stderr
    assert sorted(lines[4:6]) == ["/run tmpfs rw,nosuid,nodev,noexec,relatime",
                                  "/tmp tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k"]


def test_named_volume_copy_up_and_owners(debian):
    """A new named volume takes what the image has at its mount point, owners
    and modes included (the mount point's own too); files a container writes
    there keep their owner on the host; a second container sees them, and a
    volume with content is not filled again."""
    p = debian.run("--rm", "-v", "mail:/var/mail", "-v", "spool:/var/spool", "-u", "mail",
                   IMAGE, "bash", "-c",
                   "stat -c '%U:%G %a' /var/mail; readlink /var/spool/mail; "
                   "echo hi > /var/mail/note && stat -c '%U:%G' /var/mail/note")
    assert p.stdout.split("\n")[:3] == ["root:mail 2775", "../mail", "mail:mail"], p.stderr
    src = debian.out("volume", "inspect", "-f", "{{.Mountpoint}}", "mail").strip()
    st = os.stat(src)
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (0, 8, "0o2775")
    st = os.stat(os.path.join(src, "note"))
    assert (st.st_uid, st.st_gid) == (8, 8)
    p = debian.run("--rm", "-v", "mail:/srv/elsewhere", IMAGE, "cat", "/srv/elsewhere/note")
    assert p.stdout == "hi\n", p.stderr
    p = debian.run("--rm", "-v", "mail:/etc/apt", IMAGE, "ls", "/etc/apt")
    assert p.stdout.split() == ["note"]  # not empty: nothing copied
    assert sorted(debian.out("volume", "ls", "-q").split()) == ["mail", "spool"]
    debian.out("volume", "rm", "mail", "spool")


def test_anonymous_volume_from_image_volume(debian):
    p = debian.run("--name", "seed", IMAGE, "bash", "-c",
                   "mkdir -p /srv/data && echo seed > /srv/data/s && chown -R www-data: /srv/data")
    assert p.returncode == 0, p.stderr
    debian.out("commit", "-c", "VOLUME /srv/data", "seed", "debian:vol")
    debian.out("rm", "seed")
    assert debian.out("inspect", "-f", "{{json .Config.Volumes}}", "debian:vol") == \
        '{"/srv/data":{}}\n'
    p = debian.run("--name", "anon", "-u", "www-data", "debian:vol", "bash", "-c",
                   "stat -c '%U' /srv/data; cat /srv/data/s; echo more >> /srv/data/s")
    assert p.stdout.split() == ["www-data", "seed"], p.stderr
    import json

    mounts = json.loads(debian.out("inspect", "-f", "{{json .Mounts}}", "anon"))
    assert [(m["Type"], m["Destination"], m["RW"]) for m in mounts] == [
        ("volume", "/srv/data", True)]
    name = mounts[0]["Name"]
    assert re.fullmatch(r"[0-9a-f]{64}", name)
    assert debian.out("volume", "ls", "-q").split() == [name]
    data = debian.out("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip()
    with open(os.path.join(data, "s")) as f:
        assert f.read() == "seed\nmore\n"
    assert os.stat(os.path.join(data, "s")).st_uid == 33
    debian.out("rm", "-v", "anon")
    assert debian.out("volume", "ls", "-q") == ""


def test_bind_mounts_and_owners(debian, workdir):
    host = os.path.join(workdir, "site")
    os.mkdir(host)
    os.chown(host, 33, 33)
    with open(os.path.join(host, "index.html"), "w") as f:
        f.write("<p>hi</p>\n")
    ro = os.path.join(workdir, "conf")
    os.mkdir(ro)
    p = debian.run("--rm", "-u", "www-data", "-v", f"{host}:/var/www/html",
                   "-v", f"{ro}:/etc/site:ro", IMAGE, "bash", "-c",
                   "cat /var/www/html/index.html; echo new > /var/www/html/new; "
                   "mkdir /var/www/html/sub; touch /etc/site/x 2>/dev/null || echo ro")
    assert p.stdout.split("\n")[:2] == ["<p>hi</p>", "ro"], p.stderr
    for name in ("new", "sub"):
        st = os.stat(os.path.join(host, name))
        assert (st.st_uid, st.st_gid) == (33, 33), name
    assert os.listdir(ro) == []
    # -v makes a missing host directory (root's), --mount refuses it: Docker's two rules
    p = debian.run("--rm", "-v", f"{host}/made/here:/x", IMAGE, "stat", "-c", "%U %a", "/x")
    assert p.stdout == "root 755\n", p.stderr
    assert os.path.isdir(f"{host}/made/here")
    p = debian.run("--rm", "--mount", f"type=bind,source={host}/nosuch,target=/x", IMAGE, "true")
    assert p.returncode == 125
    assert ('invalid mount config for type "bind": bind source path does not exist: '
            f"{host}/nosuch") in p.stderr, p.stderr


def _limit_script() -> str:
    """memory, pids and cpu limits of the container's own cgroup as it sees
    them (v1 or v2), then its rlimits and cpus."""
    return ("cg=/sys/fs/cgroup; "
            "if [ -e $cg/memory.max ]; then cat $cg/memory.max $cg/pids.max; "
            "  read q p < $cg/cpu.max; echo $q $p; "
            "else cat $cg/memory/memory.limit_in_bytes $cg/pids/pids.max; "
            "  echo $(cat $cg/cpu/cpu.cfs_quota_us) $(cat $cg/cpu/cpu.cfs_period_us); fi; "
            "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu; ulimit -c; nproc; "
            "grep Cpus_allowed_list /proc/self/status | cut -f2")


def test_limits_read_back_inside(debian_rt):
    p = debian_rt.run("--rm", "-m", "96m", "--pids-limit", "40", "--cpus", "0.5",
                      "--cpuset-cpus", "0", "--ulimit", "nofile=512:1024",
                      "--ulimit", "nproc=100:200", "--ulimit", "core=0:0",
                      IMAGE, "bash", "-c", _limit_script())
    assert p.stdout.split("\n")[:10] == [
        str(96 << 20), "40", "50000 100000", "512", "1024", "100", "200", "0", "1", "0"], \
        p.stdout + p.stderr
    # the pids limit holds: pid 1 and 9 children, then fork fails (dash, which
    # does not retry a failed fork as bash does)
    p = debian_rt.run("--rm", "--pids-limit", "10", IMAGE, "sh", "-c",
                      "i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); echo $i; done")
    assert p.stdout.split()[-1] == "9", p.stdout + p.stderr
    assert "Cannot fork" in p.stderr


def test_hostname_hosts_resolv_conf(debian):
    cid = debian.out("create", "--network", "none", IMAGE, "bash", "-c",
                     "hostname; cat /etc/hostname; cat /etc/hosts; echo ---; "
                     "cat /etc/resolv.conf; echo ---; getent hosts localhost").strip()
    p = debian("start", "-a", cid)
    assert p.returncode == 0, p.stderr
    head, resolv, getent = p.stdout.split("---\n")
    assert head == f"{cid[:12]}\n{cid[:12]}\n" + HOSTS
    with open("/etc/resolv.conf") as f:
        host_ns = [ln.split()[1] for ln in f if ln.startswith("nameserver")
                   and not ln.split()[1].startswith(("127.", "::1"))]
    ns = [ln.split()[1] for ln in resolv.splitlines() if ln.startswith("nameserver")]
    assert ns == (host_ns or ["8.8.8.8", "8.8.4.4"])
    assert getent.split()[0] == "::1" and "localhost" in getent.split()
    p = debian.run("--rm", "--network", "none", "--hostname", "web1.example", IMAGE, "bash",
                   "-c", "hostname; cat /etc/hostname; hostname -s; echo $HOSTNAME")
    assert p.stdout.split() == ["web1.example", "web1.example", "web1", "web1.example"]
    # without a network of its own, --add-host and --dns* are written too (as
    # dockerd 20.10 does: the same hosts lines, the same resolv.conf lines)
    p = debian.run("--rm", "--network", "none", "--add-host", "db:10.1.2.3", "--dns",
                   "10.9.9.9", "--dns-search", "example.org", IMAGE, "bash", "-c",
                   "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; getent hosts db")
    hosts, resolv, getent = p.stdout.split("---\n")
    assert hosts == HOSTS + "10.1.2.3\tdb\n", p.stderr
    assert sorted(resolv.splitlines()) == ["nameserver 10.9.9.9", "search example.org"]
    assert getent.split() == ["10.1.2.3", "db"]


def test_exec_user_workdir_env(debian_rt):
    b = debian_rt
    b.run("-d", "--name", "ex", "-e", "FROM_RUN=1", IMAGE, "sleep", "1000", check=True)
    p = b("exec", "ex", "bash", "-c", "id; pwd; echo $HOME $FROM_RUN; cat /proc/1/cmdline")
    assert p.stdout.split("\n")[:3] == ["uid=0(root) gid=0(root) groups=0(root)", "/",
                                        "/root 1"], p.stderr
    assert p.stdout.split("\n")[3].replace("\0", " ").strip() == "sleep 1000"
    p = b("exec", "-u", "www-data", "-w", "/tmp", "-e", "A=x", "-e", "FROM_RUN=2", "ex",
          "bash", "-c", "id; pwd; echo $HOME $A $FROM_RUN; touch mine; stat -c %U mine")
    assert p.stdout.split("\n")[:4] == [
        "uid=33(www-data) gid=33(www-data) groups=33(www-data)", "/tmp", "/var/www x 2",
        "www-data"], p.stderr
    p = b("exec", "-u", "nobody:tty", "ex", "id")
    assert p.stdout == "uid=65534(nobody) gid=5(tty) groups=5(tty)\n"
    p = b("exec", "ex", "bash", "-c", "exit 7")
    assert p.returncode == 7
    p = b("exec", "ex", "nosuchcmd")
    assert p.returncode == 127
    p = b("exec", "-i", "ex", "tr", "a-z", "A-Z", input=b"piped\n")
    assert p.stdout == "PIPED\n"
    b.out("stop", "-t", "0", "ex")
    p = b("exec", "ex", "true")
    assert p.returncode == 125 and "is not running" in p.stderr


def test_cp_in_and_out(debian, workdir):
    src = os.path.join(workdir, "in")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "sub", "f"), "w") as f:
        f.write("payload\n")
    os.chown(os.path.join(src, "sub", "f"), 1234, 4321)
    debian.run("-d", "--name", "cp1", IMAGE, "sleep", "1000", check=True)
    # in: Docker makes copies root's unless -a keeps the source's owners
    debian.out("cp", src, "cp1:/srv/plain")
    debian.out("cp", "-a", src, "cp1:/srv/archive")
    p = debian("exec", "cp1", "stat", "-c", "%u:%g %n", "/srv/plain/sub/f",
               "/srv/archive/sub/f")
    assert p.stdout.split("\n")[:2] == ["0:0 /srv/plain/sub/f", "1234:4321 /srv/archive/sub/f"]
    # out: files the container made as www-data, and a tar stream on stdout
    debian.out("exec", "-u", "www-data", "cp1", "bash", "-c",
               "mkdir /tmp/made && echo from-container > /tmp/made/g")
    out = os.path.join(workdir, "out")
    os.mkdir(out)
    debian.out("cp", "cp1:/tmp/made", out)
    with open(os.path.join(out, "made", "g")) as f:
        assert f.read() == "from-container\n"
    import subprocess
    import tarfile

    proc = debian.popen("cp", "cp1:/etc/debian_version", "-", stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
        members = [(m.name, m.uid, tf.extractfile(m).read().decode()) for m in tf]
    assert proc.wait() == 0
    assert len(members) == 1 and members[0][:2] == ("debian_version", 0)
    assert re.fullmatch(r"12\.\d+\n", members[0][2])
    p = debian("cp", "cp1:/nonexistent", out)
    assert p.returncode == 1
    assert "Could not find the file /nonexistent in container cp1" in p.stderr


def test_cp_sees_volumes_binds_and_etc_files(debian, workdir):
    """cp reads and writes through the container's volumes and bind mounts
    (as dockerd mounts them for an archive request), running or stopped; a
    read-only one refuses; /etc/hostname is the container's."""
    import subprocess
    import tarfile

    host, ro = os.path.join(workdir, "host"), os.path.join(workdir, "ro")
    os.mkdir(host)
    os.mkdir(ro)
    with open(os.path.join(host, "b"), "w") as f:
        f.write("bound\n")
    src = os.path.join(workdir, "in")
    with open(src, "w") as f:
        f.write("copied in\n")
    debian.run("-d", "--name", "cpv", "-v", "data:/data", "-v", f"{host}:/bind",
               "-v", f"{ro}:/ro:ro", IMAGE, "bash", "-c", "echo vol > /data/v; sleep 1000",
               check=True)
    until(lambda: debian("exec", "cpv", "test", "-s", "/data/v").returncode == 0,
          "the volume written")
    out = os.path.join(workdir, "out")
    os.mkdir(out)
    debian.out("cp", "cpv:/data/v", out)
    debian.out("cp", "cpv:/bind/b", out)
    assert sorted(os.listdir(out)) == ["b", "v"]
    with open(os.path.join(out, "v")) as f:
        assert f.read() == "vol\n"
    proc = debian.popen("cp", "cpv:/etc/hostname", "-", stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
        found = [(m.name, oct(m.mode), tf.extractfile(m).read().decode()) for m in tf]
    assert proc.wait() == 0
    cid = debian.out("inspect", "-f", "{{.Id}}", "cpv").strip()
    assert found == [("hostname", "0o644", cid[:12] + "\n")]
    debian.out("cp", src, "cpv:/data/in")
    assert debian.out("exec", "cpv", "cat", "/data/in") == "copied in\n"
    vol = debian.out("volume", "inspect", "-f", "{{.Mountpoint}}", "data").strip()
    assert sorted(os.listdir(vol)) == ["in", "v"]
    p = debian("cp", src, "cpv:/ro/in")
    assert p.returncode == 1 and os.listdir(ro) == []
    assert "mounted volume is marked read-only" in p.stderr
    # stopped: the same paths, through the same mounts
    debian.out("stop", "-t", "0", "cpv")
    debian.out("cp", src, "cpv:/bind/in2")
    assert sorted(os.listdir(host)) == ["b", "in2"]
    proc = debian.popen("cp", "cpv:/data/in", "-", stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tf:
        assert [m.name for m in tf] == ["in"]
    assert proc.wait() == 0


def test_init_reaps_orphans_left_by_bash(debian):
    """An orphan re-parented to pid 1: `sleep` as pid 1 never reaps it (a
    zombie stays); with --init, the init reaps it; bash runs as its child and
    gets the stop signal."""
    debian.run("-d", "--name", "noinit", IMAGE, "sleep", "1000", check=True)
    debian.out("exec", "noinit", "bash", "-c", "(sleep 0.1 &)")
    until(lambda: debian.out("exec", "noinit", "bash", "-c", ZOMBIES).strip() == "1",
          "a zombie under sleep as pid 1")
    debian.run("-d", "--init", "--name", "withinit", IMAGE, "bash", "-c",
               "sleep 1000 & wait", check=True)
    debian.out("exec", "withinit", "bash", "-c", "(sleep 0.1 &)")
    time.sleep(0.3)
    until(lambda: debian.out("exec", "withinit", "bash", "-c", ZOMBIES).strip() == "0",
          "no zombie under --init")
    cmd = debian.out("exec", "withinit", "cat", "/proc/1/cmdline").split("\0")
    assert cmd[:3] == ["/sbin/docker-init", "--", "bash"]
    # bash, not pid 1 here, dies of SIGTERM: 143, without waiting for the timeout
    assert debian.out("stop", "-t", "60", "withinit") == "withinit\n"
    assert debian.out("inspect", "-f", "{{.State.ExitCode}}", "withinit") == "143\n"


def test_stop_bash_as_pid_1(debian):
    """bash as pid 1 without a handler ignores SIGTERM: stop waits -t and
    kills (137); with a trap it exits as the trap says."""
    debian.run("-d", "--name", "deaf", IMAGE, "bash", "-c", "while :; do sleep 0.1; done",
               check=True)
    assert debian.out("stop", "-t", "1", "deaf") == "deaf\n"
    assert debian.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                      "deaf") == "exited 137\n"
    debian.run("-d", "--name", "trap", IMAGE, "bash", "-c",
               "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
               check=True)
    until(lambda: "ready" in debian.out("logs", "trap"), "the trap is set")
    assert debian.out("stop", "-t", "60", "trap") == "trap\n"
    assert debian.out("inspect", "-f", "{{.State.ExitCode}}", "trap") == "7\n"
    assert debian.out("logs", "trap") == "ready\ngot TERM\n"
    assert "berth stop" in debian.out("why", "trap")
    # --stop-signal: bash as pid 1 has a default action for none, but a trap on USR1 works
    debian.run("-d", "--name", "usr1", "--stop-signal", "SIGUSR1", IMAGE, "bash", "-c",
               "trap 'exit 3' USR1; echo ready; while :; do sleep 0.1; done", check=True)
    until(lambda: "ready" in debian.out("logs", "usr1"), "the trap is set")
    debian.out("stop", "usr1")
    assert debian.out("inspect", "-f", "{{.State.ExitCode}}", "usr1") == "3\n"


def test_logs_streams_tail_timestamps(debian):
    debian.run("-d", "--name", "lg", IMAGE, "bash", "-c",
               "echo out1; echo err1 >&2; echo out2; printf 'no newline'", check=True)
    assert debian.out("wait", "lg") == "0\n"
    p = debian("logs", "lg")
    assert (p.stdout, p.stderr) == ("out1\nout2\nno newline", "err1\n")
    p = debian("logs", "-t", "lg")
    ts = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z "
    assert re.fullmatch(f"{ts}out1\n{ts}out2\n{ts}no newline", p.stdout), p.stdout
    assert re.fullmatch(f"{ts}err1\n", p.stderr), p.stderr
    # --tail counts lines of both streams together (one stream here: the order
    # of lines between two pipes is the monitor's reading order)
    debian.run("-d", "--name", "lg2", IMAGE, "bash", "-c", "for i in 1 2 3 4 5; do echo $i; done",
               check=True)
    assert debian.out("wait", "lg2") == "0\n"
    assert debian.out("logs", "--tail", "2", "lg2") == "4\n5\n"
    assert debian.out("logs", "--tail", "0", "lg2") == ""
    assert debian.out("logs", "--tail", "all", "lg2") == "1\n2\n3\n4\n5\n"


def test_top_ps_columns(debian):
    debian.run("-d", "--name", "tp", "-u", "www-data", IMAGE, "bash", "-c",
               "sleep 1000 & wait", check=True)
    until(lambda: "sleep" in debian.out("top", "tp"), "the sleep runs")
    lines = debian.out("top", "tp").splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    cmds = sorted(ln.split(None, 7)[7] for ln in lines[1:])
    assert cmds == ["bash -c sleep 1000 & wait", "sleep 1000"]
    pid = int(debian.out("inspect", "-f", "{{.State.Pid}}", "tp"))
    # the UID column is the host's name for uid 33, as `ps` on the host prints it
    import pwd

    try:
        host_user = pwd.getpwuid(33).pw_name
    except KeyError:
        host_user = "33"
    rows = {int(ln.split()[1]): ln.split()[0] for ln in lines[1:]}
    assert rows[pid] == host_user
    lines = debian.out("top", "tp", "-o", "pid,comm").splitlines()
    assert lines[0].split() == ["PID", "COMMAND"]
    assert sorted(ln.split()[1] for ln in lines[1:]) == ["bash", "sleep"]
    p = debian("top", "tp", "-o", "comm")
    assert p.returncode == 1 and "Couldn't find PID field in ps output" in p.stderr
    # forest listings refuse -q: all processes then, filtered to the container's
    lines = debian.out("top", "tp", "axf").splitlines()
    assert lines[0].split() == ["PID", "TTY", "STAT", "TIME", "COMMAND"]
    assert sorted(ln.split(None, 4)[4].lstrip("\\_ ") for ln in lines[1:]) == [
        "bash -c sleep 1000 & wait", "sleep 1000"], lines
    # nothing selected (no terminal here): ps's exit status, as dockerd says it
    p = debian("top", "tp", "c", "f")
    assert p.returncode == 1 and p.stderr.endswith("ps: exit status 1\n"), p.stderr
    debian.out("stop", "-t", "0", "tp")
    p = debian("top", "tp")
    assert p.returncode == 1 and "is not running" in p.stderr


def test_dpkg_and_apt_work_inside(debian):
    """The distribution's own tools run unchanged: dpkg's database reads, apt
    can resolve what is installed, and a package's maintainer scripts' tools
    (update-alternatives, adduser's useradd) work as root in the container."""
    p = debian.run("--rm", IMAGE, "bash", "-c",
                   "dpkg -s bash | grep -c '^Status: install ok installed'; "
                   "apt-cache policy bash | head -1; update-alternatives --list awk")
    assert p.stdout.split("\n")[:3] == ["1", "bash:", "/usr/bin/mawk"], p.stdout + p.stderr
