"""The OCI runtime: a library (this package) and a runc-compatible CLI (cli.py).

Processes of one container start, named as youki and runc name them:

- the runtime process ("parent"): validates, creates the state directory,
  cgroup and exec FIFO, forks the child and answers its requests over a
  SOCK_SEQPACKET socket pair created before the fork (sync.py);
- the "child" (berth-runtime:[1:CHILD]): joins or creates namespaces, forks
  the container's init and exits;
- the "init" (berth-runtime:[2:INIT]): pid 1 of a new pid namespace; builds
  the root filesystem (rootfs.py), reports ready, waits on the exec FIFO until
  `start`, then sets up the process (process.py) and execs it.

`exec` (exec.py) adds a process to a running container the same way: a child
joins the init's namespaces while the parent moves it into the cgroup, and
forks the process inside; it ends with the init's own last steps
(init.exec_process). Confinement: capabilities (linux/capabilities.py),
seccomp compiled by the parent before any fork and loaded last
(linux/seccomp.py), LSM labels (lsm.py); Docker's defaults as data in
confinement.py.
"""
